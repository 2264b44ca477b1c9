package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/nixlarder/larder/prefetch"
)

var errInterrupted = exitIncomplete{"interrupted; re-run the same command to resume"}

// exitIncomplete is the exit status of a prefetch or check that found gaps.
type exitIncomplete struct{ msg string }

func (e exitIncomplete) Error() string { return e.msg }

type prefetchFlags struct {
	server      string
	inProcess   bool
	pin         string
	jobs        int
	rate        string
	files       []string
	flakes      []string
	flakeInputs bool
	buildDeps   bool
}

func runPrefetch(args []string) error {
	fs := serveFlags("prefetch")
	var pf prefetchFlags
	fs.StringVar(&pf.server, "server", "http://localhost:5000", "Larder server that does the work")
	fs.StringVar(&pf.pin, "pin", "", "record the roots under this pin name (replaces an existing pin)")
	fs.IntVar(&pf.jobs, "jobs", prefetch.DefaultJobs, "NAR downloads at once")
	fs.StringVar(&pf.rate, "rate", "0", "bandwidth cap for this prefetch, bytes/s (suffixes K, M, G)")
	fs.StringArrayVarP(&pf.files, "file", "f", nil, "read store paths from FILE, one a line ('-' = stdin; store-paths.xz accepted)")
	fs.StringArrayVar(&pf.flakes, "flake", nil, "an installable to evaluate with the local nix, e.g. .#nixosConfigurations.laptop.config.system.build.toplevel")
	fs.BoolVar(&pf.flakeInputs, "flake-inputs", false, "also mirror the flakes' locked inputs (so evaluation works offline)")
	fs.BoolVar(&pf.buildDeps, "build-deps", false, "also mirror the build-time closure; realise fixed-output sources no upstream has")
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: larder prefetch [--server URL | --data-dir DIR] [--pin NAME] [flags] [PATH...]\n%s", fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return err
	}
	pf.inProcess = fs.Changed("data-dir")
	rate, err := parseSize(pf.rate)
	if err != nil {
		return fmt.Errorf("--rate: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	roots, err := collectRoots(fs.Args(), &pf)
	if err != nil {
		return err
	}
	var t target = remote{pf.server}
	if pf.inProcess {
		dd, err := openInProcess(fs)
		if err != nil {
			return err
		}
		defer dd.Close()
		t = dd.service()
	}
	var urls []string
	if len(pf.flakes) > 0 {
		nix, cleanup := prefetch.LocalNix{}, func() {}
		if r, ok := t.(remote); ok {
			if nix, cleanup, err = r.proxiedNix(ctx); err != nil {
				return err
			}
		}
		more, fetched, err := planFlakes(ctx, t, nix, pf.flakes, prefetch.PlanOptions{FlakeInputs: pf.flakeInputs, BuildDeps: pf.buildDeps})
		cleanup()
		if err != nil {
			return err
		}
		roots, urls = append(roots, more...), fetched
	}
	if len(roots) == 0 {
		return errors.New("nothing to prefetch: give store paths, -f FILE or --flake INSTALLABLE")
	}
	req := &prefetch.Request{Roots: roots, Pin: pf.pin, Jobs: pf.jobs, Rate: rate}
	show := newProgressPrinter(os.Stderr)
	rep, err := t.Prefetch(ctx, req, show.update)
	show.done()
	if err != nil {
		return err
	}
	if pf.pin != "" && len(urls) > 0 {
		if err := t.PinURLs(ctx, pf.pin, urls); err != nil {
			return fmt.Errorf("recording source URLs under pin %s: %w", pf.pin, err)
		}
		fmt.Printf("%d source URLs recorded under pin %s\n", len(urls), pf.pin)
	}
	fmt.Print(rep.String())
	if !rep.Complete {
		return exitIncomplete{"prefetch incomplete"}
	}
	return nil
}

// collectRoots gathers store paths from arguments and list files, and
// rejects bad input before anything is sent.
func collectRoots(args []string, pf *prefetchFlags) ([]string, error) {
	var roots []string
	for _, a := range args {
		if _, err := prefetch.ParseRoot(a); err != nil {
			return nil, fmt.Errorf("argument %w", err)
		}
		roots = append(roots, a)
	}
	for _, f := range pf.files {
		list, err := readListFile(f)
		if err != nil {
			return nil, err
		}
		roots = append(roots, list...)
	}
	return roots, nil
}

func readListFile(name string) ([]string, error) {
	if name == "-" {
		return prefetch.ReadList(os.Stdin, "stdin")
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return prefetch.ReadList(f, name)
}

func openInProcess(fs *pflag.FlagSet) (*dataDir, error) {
	cfg, err := configFrom(fs)
	if err != nil {
		return nil, err
	}
	return openDataDir(cfg, newLogger("warn"), true)
}

// parseSize reads "1500", "10K", "2.5M", "1G" (powers of 1024).
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToUpper(strings.TrimSuffix(strings.TrimSuffix(s, "/s"), "B")))
	mult := 1.0
	if n := len(s); n > 0 {
		if i := strings.IndexByte("KMGT", s[n-1]); i >= 0 {
			mult = float64(int64(1) << (10 * (i + 1)))
			s = s[:n-1]
		}
	}
	var v float64
	if _, err := fmt.Sscanf(s, "%g", &v); err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	return int64(v * mult), nil
}

// progressPrinter draws a bar on a terminal and plain lines elsewhere.
type progressPrinter struct {
	w     *os.File
	tty   bool
	last  time.Time
	drawn bool
}

func newProgressPrinter(w *os.File) *progressPrinter {
	fi, err := w.Stat()
	return &progressPrinter{w: w, tty: err == nil && fi.Mode()&os.ModeCharDevice != 0}
}

func (p *progressPrinter) update(pr prefetch.Progress) {
	line := progressLine(pr)
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.drawn = true
		return
	}
	if time.Since(p.last) >= 5*time.Second {
		fmt.Fprintln(p.w, line)
		p.last = time.Now()
	}
}

func (p *progressPrinter) done() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}

func progressLine(p prefetch.Progress) string {
	const width = 24
	frac := 0.0
	if p.PathsTotal > 0 {
		frac = float64(p.PathsDone) / float64(p.PathsTotal)
	}
	if p.BytesTotal > 0 {
		frac = min(frac, float64(p.BytesDone)/float64(p.BytesTotal))
	}
	bar := strings.Repeat("#", int(frac*width)) + strings.Repeat(".", width-int(frac*width))
	secs := p.Elapsed.Seconds()
	rate, eta := 0.0, "?"
	if secs > 0 {
		rate = float64(p.BytesDone) / secs
	}
	if rate > 0 && p.BytesTotal >= p.BytesDone {
		eta = (time.Duration(float64(p.BytesTotal-p.BytesDone)/rate) * time.Second).Round(time.Second).String()
	}
	return fmt.Sprintf("[%s] %d/%d paths  %s/%s  %s/s  ETA %s", bar, p.PathsDone, p.PathsTotal,
		prefetch.HumanBytes(p.BytesDone), prefetch.HumanBytes(p.BytesTotal), prefetch.HumanBytes(int64(rate)), eta)
}
