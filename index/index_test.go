package index

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func openTemp(t *testing.T) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "index.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

func TestNarInfoRoundTrip(t *testing.T) {
	db, path := openTemp(t)
	ctx := context.Background()
	if _, err := db.NarInfo(ctx, "00000000000000000000000000000000"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing row: %v, want ErrNotFound", err)
	}
	in := &NarInfo{Hash: "jx5s186f46527m5ll3jmhyf0a5dclr2k", StorePath: "/nix/store/jx5s186f46527m5ll3jmhyf0a5dclr2k-a",
		NarHash: "sha256:1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h", NarSize: 120,
		References: []string{"x-a", "y-b"}, Text: "StorePath: ...\n", Source: "http://up", NarURL: "http://up/nar/x.nar.xz"}
	if err := db.PutNarInfo(ctx, in); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db2, err := Open(path) // reopening must not re-run migrations
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	got, err := db2.NarInfo(ctx, in.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if got.StorePath != in.StorePath || got.NarSize != 120 || len(got.References) != 2 || got.References[1] != "y-b" || got.NarURL != in.NarURL {
		t.Fatalf("got %+v", got)
	}
	byHash, err := db2.NarInfosByNarHash(ctx, in.NarHash)
	if err != nil || len(byHash) != 1 {
		t.Fatalf("by nar hash: %v %v", byHash, err)
	}
}

func TestNarFilesAndTouch(t *testing.T) {
	db, _ := openTemp(t)
	ctx := context.Background()
	for _, f := range []*NarFile{
		{NarHash: "sha256:a", Compression: "xz", FileHash: "sha256:f1", FileSize: 100, NarSize: 300},
		{NarHash: "sha256:a", Compression: "zstd", FileHash: "sha256:f2", FileSize: 120, NarSize: 300},
	} {
		if err := db.PutNarFile(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	files, err := db.NarFiles(ctx, "sha256:a")
	if err != nil || len(files) != 2 || files[0].Compression != "xz" {
		t.Fatalf("files %+v %v", files, err)
	}
	later := time.Now().Add(time.Hour)
	if err := db.Touch(ctx, nil, []string{"sha256:a"}, later); err != nil {
		t.Fatal(err)
	}
	f, _ := db.NarFile(ctx, "sha256:a", "zstd")
	if f.LastAccess.Unix() != later.Unix() {
		t.Fatalf("touch not recorded: %v", f.LastAccess)
	}
	if err := db.DeleteNarFile(ctx, "sha256:a", "xz"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.NarFile(ctx, "sha256:a", "xz"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted file still there: %v", err)
	}
	n, files2, bytes, err := db.Counts(ctx)
	if err != nil || n != 0 || files2 != 1 || bytes != 120 {
		t.Fatalf("counts %d %d %d %v", n, files2, bytes, err)
	}
}

// Concurrent writers must queue on the one write connection, never fail with
// "database is locked".
func TestConcurrentWrites(t *testing.T) {
	db, _ := openTemp(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- db.PutNarFile(ctx, &NarFile{NarHash: "sha256:" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Compression: "xz", FileHash: "x", FileSize: 1, NarSize: 1})
			if _, err := db.NarFile(ctx, "sha256:aa", "xz"); err != nil && !errors.Is(err, ErrNotFound) {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	_, files, _, _ := db.Counts(ctx)
	if files != 200 {
		t.Fatalf("%d files, want 200", files)
	}
}

func TestPins(t *testing.T) {
	db, _ := openTemp(t)
	ctx := context.Background()
	if err := db.SetPin(ctx, "trip", nil); err == nil {
		t.Fatal("a pin without roots was recorded")
	}
	if err := db.SetPin(ctx, "trip", []string{"/nix/store/a", "/nix/store/b"}); err != nil {
		t.Fatal(err)
	}
	if err := db.SetPin(ctx, "trip", []string{"/nix/store/c"}); err != nil {
		t.Fatal(err)
	}
	p, err := db.Pin(ctx, "trip")
	if err != nil || len(p.Roots) != 1 || p.Roots[0] != "/nix/store/c" {
		t.Fatalf("re-pinning must replace the roots: %+v %v", p, err)
	}
	if err := db.DeletePin(ctx, "trip"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pin(ctx, "trip"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted pin still there: %v", err)
	}
	if err := db.DeletePin(ctx, "trip"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleting a missing pin: %v", err)
	}
}
