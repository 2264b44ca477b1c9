package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/nixlarder/larder/index"
	"github.com/nixlarder/larder/mirror"
	"github.com/nixlarder/larder/mirror/bundle"
	"github.com/nixlarder/larder/mirror/urlcache"
	"github.com/nixlarder/larder/prefetch"
)

// localSource exports from a data dir, signing with its key.
type localSource struct{ m *mirror.Mirror }

func (s localSource) NarInfo(ctx context.Context, hash string) ([]byte, error) {
	return s.m.NarInfo(ctx, hash)
}

func (s localSource) OpenNAR(ctx context.Context, url string) (io.ReadCloser, error) {
	h, compression, err := mirror.ParseNarURL(url)
	if err != nil {
		return nil, err
	}
	nar, err := s.m.OpenNAR(ctx, h, compression)
	if err != nil {
		return nil, err
	}
	if nar.File != nil {
		return nar.File, nil
	}
	return nar.Stream, nil
}

// runExport writes closures as a file:// binary cache plus a manifest.
func runExport(args []string) error {
	fs := readerFlags("export")
	server := fs.String("server", "", "export from this running Larder instead of a data dir")
	pins := fs.StringArray("pin", nil, "export this pin's closure (repeatable)")
	exclude := fs.String("exclude", "", "inventory of the receiving side (larder inventory): skip what it has")
	if err := fs.Parse(args); err != nil {
		return helpIsFine(err)
	}
	if fs.NArg() < 1 || (len(*pins) == 0 && fs.NArg() < 2) {
		return errors.New("usage: larder export [--data-dir DIR | --server URL] (--pin NAME | PATH...) [--exclude INVENTORY] OUT_DIR")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	x := &bundle.Export{Dir: fs.Arg(fs.NArg() - 1), Roots: fs.Args()[:fs.NArg()-1], Pins: map[string][]string{}}
	for _, r := range x.Roots {
		if _, err := prefetch.ParseRoot(r); err != nil {
			return fmt.Errorf("argument %w", err)
		}
	}
	if fs.Changed("server") {
		if err := serverSource(ctx, remote{*server}, x, *pins); err != nil {
			return err
		}
	} else {
		dd, err := openReader(fs)
		if err != nil {
			return err
		}
		defer dd.Close()
		if err := dataDirSource(ctx, dd, x, *pins); err != nil {
			return err
		}
	}
	if *exclude != "" {
		inv, err := readInventory(*exclude)
		if err != nil {
			return err
		}
		x.Exclude = inv
	}
	show := newProgressPrinter(os.Stderr)
	rep, err := x.Run(ctx, show.update)
	show.done()
	if err != nil {
		return err
	}
	fmt.Printf("%d paths: %d written (%s), %d already in %s, %d excluded, %d missing — %s\n", rep.Paths, rep.Written,
		prefetch.HumanBytes(rep.Bytes), rep.AlreadyThere, x.Dir, rep.Excluded, len(rep.Missing), rep.Elapsed.Round(1e6))
	if rep.URLs > 0 {
		fmt.Printf("%d kept sources\n", rep.URLs)
	}
	for _, m := range rep.Missing {
		fmt.Printf("  missing: %s (not stored in this Larder)\n", m)
	}
	if len(rep.Missing) > 0 {
		return exitIncomplete{"export incomplete"}
	}
	return nil
}

// serverSource exports from a running Larder over HTTP.
func serverSource(ctx context.Context, r remote, x *bundle.Export, pins []string) error {
	x.Src = r
	key, err := r.get(ctx, "/pubkey")
	if err != nil {
		return err
	}
	x.Keys = []string{string(key)}
	statuses, err := r.pins(ctx)
	if err != nil {
		return err
	}
	return addPins(x, pins, func(name string) ([]string, bool) {
		for _, p := range statuses {
			if p.Name == name {
				return p.Roots, true
			}
		}
		return nil, false
	})
}

// dataDirSource exports from a data dir, signing with its key; a running
// server on it is no obstacle (nothing is locked or cleaned).
func dataDirSource(ctx context.Context, dd *dataDir, x *bundle.Export, pins []string) error {
	if !dd.hasKey {
		return errors.New("the data dir has no signing key (secret-key): start `larder serve` on it once, or pass --secret-key-file")
	}
	x.Src = localSource{dd.mirror}
	x.URLs = keptSources{dd}
	x.Keys = []string{dd.mirror.PublicKey().String()}
	return addPins(x, pins, func(name string) ([]string, bool) {
		p, err := dd.idx.Pin(ctx, name)
		if err != nil {
			return nil, false
		}
		return p.Roots, true
	})
}

func addPins(x *bundle.Export, pins []string, lookup func(string) ([]string, bool)) error {
	for _, name := range pins {
		roots, ok := lookup(name)
		if !ok {
			return fmt.Errorf("no pin named %q", name)
		}
		x.Pins[name] = roots
		x.Roots = append(x.Roots, roots...)
	}
	return nil
}

func readInventory(path string) (map[string]bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var inv bundle.Inventory
	if err := json.Unmarshal(data, &inv); err != nil {
		return nil, fmt.Errorf("inventory %s: %w", path, err)
	}
	set := map[string]bool{}
	for _, p := range inv.Paths {
		set[p] = true
	}
	return set, nil
}

// runInventory prints what a data dir holds, for --exclude on the other side.
func runInventory(args []string) error {
	fs := readerFlags("inventory")
	return withReader(fs, args, func(dd *dataDir) error {
		paths, err := dd.idx.StorePaths(context.Background())
		if err != nil {
			return err
		}
		out, _ := json.MarshalIndent(bundle.Inventory{Paths: paths}, "", "  ")
		_, err = fmt.Println(string(out))
		return err
	})
}

// importSink is where an import goes: a server's /api or the data dir.
type importSink interface {
	bundle.Sink
}

// runImport ingests a bundle (or any file:// cache) into a Larder.
func runImport(args []string) error {
	fs := serveFlags("import")
	server := fs.String("server", "", "import into this running Larder (it checks signatures with its own trusted keys)")
	if err := fs.Parse(args); err != nil {
		return helpIsFine(err)
	}
	if fs.NArg() != 1 {
		return errors.New("usage: larder import [--data-dir DIR | --server URL] [--trusted-key KEY...] IN_DIR")
	}
	if fs.Changed("server") && fs.Changed("trusted-key") {
		return errors.New("--trusted-key applies to --data-dir imports; a server checks with its own --trusted-key settings")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var sink importSink
	var pinStatus func(context.Context) ([]prefetch.PinStatus, error)
	if fs.Changed("server") {
		r := remote{*server}
		sink, pinStatus = r, r.pins
	} else {
		dd, err := openInProcess(fs)
		if err != nil {
			return err
		}
		defer dd.Close()
		svc := dd.service()
		sink = dataDirSink{svc, dd}
		pinStatus = func(ctx context.Context) ([]prefetch.PinStatus, error) { return svc.PinStatuses(ctx, true) }
	}
	show := newProgressPrinter(os.Stderr)
	rep, err := bundle.Import(ctx, sink, fs.Arg(0), show.update)
	show.done()
	if err != nil {
		return err
	}
	return reportImport(ctx, rep, pinStatus)
}

func reportImport(ctx context.Context, rep *bundle.ImportReport, pinStatus func(context.Context) ([]prefetch.PinStatus, error)) error {
	fmt.Printf("%d paths imported or already present, %d kept sources, %d refused — %s\n", rep.Imported, rep.URLs, len(rep.Refused), rep.Elapsed.Round(1e6))
	for _, r := range rep.Refused {
		fmt.Printf("  refused: %s: %s\n", r.Path, r.Reason)
	}
	incomplete := 0
	if len(rep.Pins) > 0 {
		statuses, err := pinStatus(ctx)
		if err != nil {
			return err
		}
		for _, p := range statuses {
			if _, ok := rep.Pins[p.Name]; !ok {
				continue
			}
			if p.OfflineReady {
				fmt.Printf("pin %s: offline-ready (%d paths)\n", p.Name, p.Paths)
				continue
			}
			incomplete++
			fmt.Printf("pin %s: INCOMPLETE\n", p.Name)
			for _, pr := range p.Problems {
				fmt.Printf("  missing: %s: %s\n", pr.Path, pr.Reason)
			}
		}
	}
	if len(rep.Refused) > 0 || incomplete > 0 {
		return exitIncomplete{"import incomplete"}
	}
	return nil
}

// keptSources reads the forward proxy's kept sources from a data dir.
type keptSources struct{ dd *dataDir }

func (k keptSources) URLsOfPin(ctx context.Context, pin string) ([]string, error) {
	return k.dd.idx.URLsOfPin(ctx, pin)
}

func (k keptSources) URL(ctx context.Context, u string) (*index.URL, error) {
	return k.dd.idx.URL(ctx, u)
}

func (k keptSources) OpenURL(sha string) (io.ReadCloser, error) {
	return k.dd.blobs.Open(urlcache.BlobKey(sha))
}

// dataDirSink imports into a data dir, kept sources included.
type dataDirSink struct {
	*prefetch.Service
	dd *dataDir
}

func (d dataDirSink) AddURL(ctx context.Context, u *index.URL, body io.Reader) error {
	return urlcache.Add(ctx, d.dd.idx, d.dd.blobs, u, body)
}
