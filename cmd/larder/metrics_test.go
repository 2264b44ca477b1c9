package main

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/nixlarder/larder/cmd/larder/internal/nixtest"
)

// scrape reads /metrics into "name{labels}" → value.
func scrape(t testing.TB, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); i > 0 && err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// Metrics move as a real client run says they should: a cold copy fetches
// from upstream, a warm one is served from disk (bytes saved), and
// /healthz does not care that the upstream is gone.
func TestMetricsThroughRealClient(t *testing.T) {
	nixtest.Require(t)
	e := nixtest.NewEnv(t)
	closure := nixtest.BuildClosure(t, e, nixtest.ClosureSpec{Paths: 5, FileBytes: 64 << 10})
	upKey, published := nixtest.SignedCache(t, e, "upstream-metrics-1", "xz", closure.Root)
	up := nixtest.ServeDir(t, published, 0)
	l := startLarder(t, t.TempDir(), "--upstream", up.URL, "--trusted-key", upKey.Public, "--prepull=false")
	key := l.pubkey(t)

	if _, err := nixtest.CopyFrom(t, e, l.URL, []string{key}, closure.Root); err != nil {
		t.Fatal(err)
	}
	cold := scrape(t, l.URL)
	fetched := cold[`larder_bytes_total{direction="fetched"}`]
	// The client's first narinfo goes upstream; Larder warms the others in
	// the background, so the client finds them as hits.
	if cold[`larder_narinfo_lookups_total{outcome="upstream"}`] < 1 || fetched <= 0 ||
		cold[`larder_narinfo_lookups_total{outcome="upstream"}`]+cold[`larder_narinfo_lookups_total{outcome="hit"}`] < 5 ||
		cold[`larder_requests_total{kind="nar",outcome="ok"}`] < 5 {
		t.Fatalf("after a cold copy: %v", pick(cold, "larder_"))
	}
	up.Close()
	if _, err := nixtest.CopyFrom(t, e, l.URL, []string{key}, closure.Root); err != nil {
		t.Fatal(err)
	}
	warm := scrape(t, l.URL)
	served := warm[`larder_bytes_total{direction="served"}`]
	if warm[`larder_bytes_total{direction="fetched"}`] != fetched || served < 2*fetched*0.99 ||
		warm[`larder_narinfo_lookups_total{outcome="hit"}`] < cold[`larder_narinfo_lookups_total{outcome="hit"}`]+5 {
		t.Fatalf("after a warm copy: fetched %v → %v, served %v", fetched, warm[`larder_bytes_total{direction="fetched"}`], served)
	}
	if v, ok := warm["larder_prefetch_running"]; !ok || v != 0 {
		t.Fatalf("prefetch gauges missing or wrong: %v", pick(warm, "larder_prefetch"))
	}
	resp, err := http.Get(l.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Fatalf("/healthz with the upstream down: %d %q", resp.StatusCode, body)
	}
}

func pick(m map[string]float64, prefix string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out
}
