package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nixlarder/larder/cmd/larder/internal/nixtest"
	"github.com/nixlarder/larder/index"
	"github.com/nixlarder/larder/mirror/blob"
	"github.com/nixlarder/larder/mirror/nixfmt"
)

// BenchmarkSuite is issue 7's side-by-side suite (scripts/bench): Larder
// against nginx on the same files Nix wrote. It prints one table and, with
// LARDER_BENCH_OUT set, writes it there as Markdown. Run with -benchtime 1x.
func BenchmarkSuite(b *testing.B) {
	nixtest.Require(b)
	nginx := requireNginx(b)
	s := &suite{b: b, e: nixtest.NewEnv(b), nginx: nginx}
	s.corpus()
	b.ResetTimer()
	for _, f := range []struct {
		name string
		run  func()
	}{{"narinfo", s.narinfoHits}, {"nar", s.cachedNARs}, {"cold", s.coldPath}, {"client", s.realClient},
		{"memory", s.memory}, {"scale", s.scale}} {
		if only := os.Getenv("LARDER_BENCH_ONLY"); only == "" || strings.Contains(","+only+",", ","+f.name+",") {
			f.run()
		}
	}
	b.StopTimer()
	s.report()
}

type row struct {
	figure, larder, baseline, ratio, target string
	pass                                    bool
}

type suite struct {
	b       *testing.B
	e       *nixtest.Env
	nginx   string
	closure nixtest.Closure
	upKey   nixtest.Key
	xzDir   string // the closure as Nix wrote it, xz
	narinfo []string
	nars    []string
	warm    *larder
	rows    []row
}

func requireNginx(b *testing.B) string {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, err = os.Stat("/usr/sbin/nginx"); err == nil {
			return "/usr/sbin/nginx"
		}
		b.Skip("nginx not installed (apt-get install nginx)")
	}
	return bin
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// corpus builds ≥ 300 paths of real library bytes (≥ 500 MB of NAR) and
// publishes them with nix copy, xz as cache.nixos.org did for years.
func (s *suite) corpus() {
	paths, size := envInt("LARDER_BENCH_PATHS", 300), envInt("LARDER_BENCH_FILE_KIB", 1800)
	s.closure = nixtest.BuildClosure(s.b, s.e, nixtest.ClosureSpec{Paths: paths, FileBytes: size << 10})
	s.upKey, s.xzDir = nixtest.SignedCache(s.b, s.e, "upstream-suite-1", "xz", s.closure.Root)
	for _, p := range s.closure.Paths {
		s.narinfo = append(s.narinfo, "/"+filepath.Base(p)[:32]+".narinfo")
	}
	s.nars = filesUnder(s.b, filepath.Join(s.xzDir, "nar"))
	up := nixtest.ServeDir(s.b, s.xzDir, 0)
	s.warm = startLarder(s.b, s.b.TempDir(), "--upstream", up.URL, "--trusted-key", s.upKey.Public)
	if _, err := nixtest.CopyFrom(s.b, s.e, s.warm.URL, []string{s.warm.pubkey(s.b)}, s.closure.Root); err != nil {
		s.b.Fatal(err)
	}
}

func filesUnder(b *testing.B, dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, "/nar/"+e.Name())
	}
	return out
}

// nginxServe runs nginx on a free port with the given server block body.
func (s *suite) nginxServe(body string) string {
	dir := s.b.TempDir()
	addr := freeAddr(s.b)
	conf := fmt.Sprintf(`daemon off; user root; worker_processes %d; pid %s/nginx.pid; error_log %s/error.log;
events { worker_connections 4096; }
http {
  access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;
  types { text/x-nix-narinfo narinfo; application/x-nix-nar xz; }
  client_body_temp_path %s/body; proxy_temp_path %s/proxy; fastcgi_temp_path %s/fcgi; uwsgi_temp_path %s/uwsgi; scgi_temp_path %s/scgi;
  proxy_cache_path %s/cache levels=1:2 keys_zone=nix:64m max_size=10g inactive=1y use_temp_path=off;
  server { listen %s; %s }
}`, runtime.NumCPU(), dir, dir, dir, dir, dir, dir, dir, dir, addr, body)
	os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644)
	cmd := exec.Command(s.nginx, "-c", filepath.Join(dir, "nginx.conf"), "-p", dir)
	if out, err := exec.Command(s.nginx, "-t", "-c", filepath.Join(dir, "nginx.conf"), "-p", dir).CombinedOutput(); err != nil {
		s.b.Fatalf("nginx config: %v\n%s", err, out)
	}
	if err := cmd.Start(); err != nil {
		s.b.Fatal(err)
	}
	s.b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitHTTP(s.b, "http://"+addr+"/")
	return "http://" + addr
}

func waitHTTP(b *testing.B, url string) {
	for i := 0; i < 200; i++ {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatalf("%s never answered", url)
}

// load runs conns keep-alive clients over paths for d and returns
// requests/s, p99 latency and body bytes/s.
func load(b *testing.B, base string, paths []string, conns int, d time.Duration) (float64, time.Duration, float64) {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var reqs, bytes atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for i := c; time.Now().Before(deadline); i++ {
				start := time.Now()
				resp, err := client.Get(base + paths[i%len(paths)])
				if err != nil {
					b.Error(err)
					return
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("%s: %d", paths[i%len(paths)], resp.StatusCode)
					return
				}
				mine = append(mine, time.Since(start))
				reqs.Add(1)
				bytes.Add(n)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p99 := time.Duration(0)
	if len(lat) > 0 {
		p99 = lat[int(math.Ceil(float64(len(lat))*0.99))-1]
	}
	return float64(reqs.Load()) / d.Seconds(), p99, float64(bytes.Load()) / d.Seconds()
}

func (s *suite) add(figure, larder, baseline string, ratio float64, target string, pass bool) {
	r := row{figure, larder, baseline, fmt.Sprintf("%.2f×", ratio), target, pass}
	if math.IsNaN(ratio) {
		r.ratio = "–"
	}
	s.rows = append(s.rows, r)
	s.b.Logf("%s: larder %s, baseline %s, ratio %s, target %s, pass %v", figure, larder, baseline, r.ratio, target, pass)
}

func (s *suite) narinfoHits() {
	static := s.nginxServe("location / { root " + s.xzDir + "; }")
	d := time.Duration(envInt("LARDER_BENCH_SECONDS", 5)) * time.Second
	lr, lp99, _ := load(s.b, s.warm.URL, s.narinfo, 64, d)
	nr, np99, _ := load(s.b, static, s.narinfo, 64, d)
	s.add("narinfo hits, 64 connections", fmt.Sprintf("%.0f req/s, p99 %v", lr, lp99.Round(10*time.Microsecond)),
		fmt.Sprintf("nginx static %.0f req/s, p99 %v", nr, np99.Round(10*time.Microsecond)), lr/nr, "≥ 1.0×", lr >= nr)
}

// larderNARs are the NAR URLs the warm Larder serves, from its narinfos.
func (s *suite) larderNARs() []string {
	var out []string
	for _, u := range narURLsOf(s.b, s.warm.URL, s.closure.Paths) {
		out = append(out, strings.TrimPrefix(u, s.warm.URL))
	}
	return out
}

func (s *suite) cachedNARs() {
	static := s.nginxServe("location / { root " + s.xzDir + "; }")
	d := time.Duration(envInt("LARDER_BENCH_SECONDS", 5)) * time.Second
	_, _, lb := load(s.b, s.warm.URL, s.larderNARs(), 16, d)
	_, _, nb := load(s.b, static, s.nars, 16, d)
	s.add("cached NAR throughput, 16 downloads", fmt.Sprintf("%.0f MB/s", lb/1e6), fmt.Sprintf("nginx sendfile %.0f MB/s", nb/1e6),
		lb/nb, "≥ 0.9×", lb >= 0.9*nb)
}

func (s *suite) coldPath() {
	up := nixtest.ServeDirThrottled(s.b, s.xzDir, 20*time.Millisecond, 50<<20)
	start := time.Now()
	if _, err := nixtest.CopyFrom(s.b, s.e, up.URL, []string{s.upKey.Public}, s.closure.Root); err != nil {
		s.b.Fatal(err)
	}
	direct := time.Since(start)
	l := startLarder(s.b, s.b.TempDir(), "--upstream", up.URL, "--trusted-key", s.upKey.Public)
	start = time.Now()
	if _, err := nixtest.CopyFrom(s.b, s.e, l.URL, []string{l.pubkey(s.b)}, s.closure.Root); err != nil {
		s.b.Fatal(err)
	}
	through := time.Since(start)
	l.stop()
	s.add("cold pull-through, 50 MB/s + 20 ms upstream", through.Round(10*time.Millisecond).String(),
		"direct "+direct.Round(10*time.Millisecond).String(), through.Seconds()/direct.Seconds(), "≤ 0.4×", through <= direct*4/10)
}

// copyTimed is a real client's nix copy of the closure into an empty store.
func (s *suite) copyTimed(url string, keys ...string) (time.Duration, time.Duration) {
	conf := "require-sigs = true\ntrusted-public-keys = " + strings.Join(keys, " ") + "\n"
	start := time.Now()
	_, cpu, err := s.e.TryTimed(conf, "nix", "copy", "--from", url, "--to", "local?root="+s.b.TempDir(), s.closure.Root)
	if err != nil {
		s.b.Fatal(err)
	}
	return time.Since(start), cpu
}

func (s *suite) realClient() {
	static := s.nginxServe("location / { root " + s.xzDir + "; }")
	origin := nixtest.ServeDir(s.b, s.xzDir, 0)
	proxied := s.nginxServe("location / { proxy_pass " + origin.URL + "; proxy_cache nix; proxy_cache_valid 200 1y; proxy_buffering on; }")
	s.copyTimed(proxied, s.upKey.Public) // warm nginx's proxy_cache
	lw, lcpu := s.copyTimed(s.warm.URL, s.warm.pubkey(s.b))
	nw, ncpu := s.copyTimed(static, s.upKey.Public)
	pw, _ := s.copyTimed(proxied, s.upKey.Public)
	s.add("real client nix copy, warm (xz)", fmt.Sprintf("%v (client CPU %v)", lw.Round(10*time.Millisecond), lcpu.Round(10*time.Millisecond)),
		fmt.Sprintf("nginx static %v (CPU %v); proxy_cache %v", nw.Round(10*time.Millisecond), ncpu.Round(10*time.Millisecond), pw.Round(10*time.Millisecond)),
		lw.Seconds()/nw.Seconds(), "≤ 1.0× nginx static", lw <= nw*105/100)

	// Recompression: the same closure through a Larder that transcodes to zstd.
	rl := startLarder(s.b, s.b.TempDir(), "--upstream", origin.URL, "--trusted-key", s.upKey.Public, "--recompress", "zstd")
	s.copyTimed(rl.URL, rl.pubkey(s.b)) // first fetch (xz), recompression follows
	waitRecompressed(s.b, rl, len(s.closure.Paths))
	zw, zcpu := s.copyTimed(rl.URL, rl.pubkey(s.b))
	s.add("real client nix copy, warm, --recompress zstd", fmt.Sprintf("%v (client CPU %v)", zw.Round(10*time.Millisecond), zcpu.Round(10*time.Millisecond)),
		fmt.Sprintf("xz: %v (client CPU %v)", lw.Round(10*time.Millisecond), lcpu.Round(10*time.Millisecond)),
		lcpu.Seconds()/zcpu.Seconds(), "client CPU ≥ 4× lower; faster than nginx static", lcpu >= 4*zcpu && zw < nw)
	rl.stop()
}

func waitRecompressed(b *testing.B, l *larder, n int) {
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		if scrapeValue(b, l.URL, "larder_recompressed_total") >= float64(n) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.Fatalf("recompression of %d NARs did not finish", n)
}

func scrapeValue(b *testing.B, base, name string) float64 {
	return scrape(b, base)[name]
}

// memory: peak RSS of Larder while 64 clients download large NARs.
func (s *suite) memory() {
	big := s.larderNARs()
	load(s.b, s.warm.URL, big, 64, 5*time.Second)
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.warm.cmd.Process.Pid))
	var hwm float64
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			hwm = kb / 1024
		}
	}
	s.add("peak RSS, 64 concurrent NAR downloads", fmt.Sprintf("%.0f MB", hwm), "–", math.NaN(), "≤ 100 MB", hwm > 0 && hwm <= 100)
}

// scale: an index of 1,000,000 narinfos (all naming one NAR file on disk).
func (s *suite) scale() {
	n := envInt("LARDER_BENCH_SCALE", 1_000_000)
	dir := s.b.TempDir()
	hashes := buildBigIndex(s.b, dir, n)
	start := time.Now()
	l := startLarder(s.b, dir, "--offline")
	startup := time.Since(start)
	var sample []string
	for i := 0; i < 2000; i++ {
		sample = append(sample, "/"+hashes[(i*7919)%len(hashes)]+".narinfo")
	}
	// p99 of one client's lookups (latency, not queueing behind 63 others
	// on two cores), and the throughput of 64.
	_, p99, _ := load(s.b, l.URL, sample, 1, 5*time.Second)
	rate, _, _ := load(s.b, l.URL, sample, 64, 5*time.Second)
	l.stop()
	s.add(fmt.Sprintf("scale: %d narinfos", n), fmt.Sprintf("hit p99 %v (one client); %.0f req/s at 64; start-up %v", p99.Round(10*time.Microsecond), rate, startup.Round(10*time.Millisecond)),
		"–", math.NaN(), "p99 < 1 ms, start-up < 3 s", p99 < time.Millisecond && startup < 3*time.Second)
}

func buildBigIndex(b *testing.B, dir string, n int) []string {
	idx, err := index.Open(filepath.Join(dir, "index.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer idx.Close()
	blobs, _ := blob.NewDisk(filepath.Join(dir, "store"))
	nar := []byte("a NAR all these narinfos share")
	var narHash nixfmt.Hash
	narHash, _ = nixfmt.ParseHash("sha256:" + hex.EncodeToString(sha256Sum(nar)))
	tmp, _ := blobs.CreateTemp()
	tmp.Write(nar)
	blobs.Commit(tmp, "nar/"+nixfmt.EncodeNix32(narHash.Digest)+".nar")
	tmp.Close()
	ctx := context.Background()
	idx.PutNarFile(ctx, &index.NarFile{NarHash: narHash.String(), Compression: "none", FileHash: narHash.String(), FileSize: int64(len(nar)), NarSize: int64(len(nar))})
	var hashes []string
	batch := make([]*index.NarInfo, 0, 50_000)
	for i := 0; i < n; i++ {
		d := make([]byte, 20)
		rand.Read(d)
		h := nixfmt.EncodeNix32(d)
		sp := nixfmt.StoreDir + "/" + h + "-scale"
		ni := &nixfmt.NarInfo{StorePath: sp, URL: "nar/x.nar", Compression: "none", NarHash: narHash, NarSize: uint64(len(nar))}
		batch = append(batch, &index.NarInfo{Hash: h, StorePath: sp, NarHash: narHash.String(), NarSize: int64(len(nar)),
			Text: string(ni.Bytes()), Source: "import"})
		hashes = append(hashes, h)
		if len(batch) == cap(batch) || i == n-1 {
			if err := idx.PutNarInfosBulk(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	return hashes
}

func (s *suite) report() {
	var md strings.Builder
	host, _ := os.Hostname()
	cpu := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
				break
			}
		}
	}
	fmt.Fprintf(&md, "Run on %s: %s, %d CPUs, %s; %d paths, %.0f MB of NAR (xz as published by Nix 2.8).\n\n",
		time.Now().Format("2006-01-02"), host, runtime.NumCPU(), cpu, len(s.closure.Paths), float64(narBytes(s.closure))/1e6)
	md.WriteString("| figure | Larder | baseline | ratio | target | pass |\n|---|---|---|---|---|---|\n")
	for _, r := range s.rows {
		pass := "**no**"
		if r.pass {
			pass = "yes"
		}
		fmt.Fprintf(&md, "| %s | %s | %s | %s | %s | %s |\n", r.figure, r.larder, r.baseline, r.ratio, r.target, pass)
	}
	fmt.Println(md.String())
	if out := os.Getenv("LARDER_BENCH_OUT"); out != "" {
		os.WriteFile(out, []byte(md.String()), 0o644)
	}
}

func narBytes(c nixtest.Closure) int64 {
	var total int64
	for _, p := range c.Paths {
		filepath.WalkDir(p, func(_ string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil {
					total += fi.Size()
				}
			}
			return nil
		})
	}
	return total
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
