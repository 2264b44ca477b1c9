package mirror_test

import (
	"context"
	"io"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// A prefetch's bandwidth cap holds while nobody else waits for the NAR, and
// a client asking for the same NAR lifts it: client traffic never queues
// behind a prefetch.
func TestPrefetchPaceAndClientLiftsIt(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()

	capped := f.path(t, "capped", 300_000, "none")
	e, err := f.m.Lookup(ctx, capped.Info.HashPart())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := f.m.FetchNAR(ctx, e, rate.NewLimiter(150_000, 32<<10)); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < time.Second {
		t.Fatalf("300 kB at 150 kB/s took %v", took)
	}

	lifted := f.path(t, "lifted", 300_000, "none")
	e, err = f.m.Lookup(ctx, lifted.Info.HashPart())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := f.m.FetchNAR(ctx, e, rate.NewLimiter(10_000, 32<<10)); done <- err }() // 30 s if capped
	time.Sleep(100 * time.Millisecond)
	start = time.Now()
	nar, err := f.m.OpenNAR(ctx, e.Info.NarHash, "none")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(nar.Stream)
	nar.Close()
	if err != nil || len(body) != len(lifted.File) {
		t.Fatalf("client read %d bytes: %v", len(body), err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the client waited %v behind the prefetch's cap", took)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
