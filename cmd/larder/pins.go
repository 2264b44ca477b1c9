package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"github.com/nixlarder/larder/index"
	"github.com/nixlarder/larder/mirror/urlcache"
	"github.com/nixlarder/larder/prefetch"
)

// readerFlags are the flags of commands that only read a data dir.
func readerFlags(name string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.String("config", "", "YAML config file")
	fs.String("data-dir", defaultDataDir(), "Larder's data dir")
	fs.String("secret-key-file", "", "signing key (default: <data-dir>/secret-key)")
	fs.String("max-size", "0", "the store's size limit, as given to larder serve (for figures)")
	return fs
}

func openReader(fs *pflag.FlagSet) (*dataDir, error) {
	full := serveFlags(fs.Name())
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			full.Set(f.Name, f.Value.String())
		}
	})
	cfg, err := configFrom(full)
	if err != nil {
		return nil, err
	}
	return openDataDir(cfg, newLogger("warn"), false)
}

// runPins lists pins, or removes one with `pins rm NAME`.
func runPins(args []string) error {
	fs := readerFlags("pins")
	return withReader(fs, args, func(dd *dataDir) error {
		ctx := context.Background()
		if fs.NArg() == 2 && fs.Arg(0) == "rm" {
			if err := dd.idx.DeletePin(ctx, fs.Arg(1)); errors.Is(err, index.ErrNotFound) {
				return fmt.Errorf("no pin named %q", fs.Arg(1))
			} else if err != nil {
				return err
			}
			fmt.Printf("removed pin %s\n", fs.Arg(1))
			return nil
		}
		if fs.NArg() != 0 {
			return errors.New("usage: larder pins [rm NAME]")
		}
		pins, err := dd.service().PinStatuses(ctx, false)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(os.Stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "PIN\tROOTS\tPATHS\tSIZE\tOFFLINE-READY\tUPDATED")
		for _, p := range pins {
			ready := "yes"
			if !p.OfflineReady {
				ready = fmt.Sprintf("no (%d missing)", len(p.Problems))
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\n", p.Name, len(p.Roots), p.Paths, prefetch.HumanBytes(p.Bytes), ready, p.UpdatedAt.Format("2006-01-02 15:04"))
		}
		return tw.Flush()
	})
}

// runCheck verifies from the index and disk alone that closures would
// substitute offline; exit status 1 names what is missing.
func runCheck(args []string) error {
	fs := readerFlags("check")
	pin := fs.String("pin", "", "check this pin's closure")
	quick := fs.Bool("quick", false, "check file sizes only, do not re-hash NAR files")
	return withReader(fs, args, func(dd *dataDir) error {
		ctx := context.Background()
		roots := fs.Args()
		if *pin != "" {
			p, err := dd.idx.Pin(ctx, *pin)
			if errors.Is(err, index.ErrNotFound) {
				return fmt.Errorf("no pin named %q", *pin)
			} else if err != nil {
				return err
			}
			roots = append(roots, p.Roots...)
		}
		if len(roots) == 0 {
			return errors.New("usage: larder check [--pin NAME | PATH...]")
		}
		rep, err := prefetch.Check(ctx, dd.mirror, roots, !*quick)
		if err != nil {
			return err
		}
		if *pin != "" {
			urls, err := dd.checkPinURLs(ctx, *pin)
			if err != nil {
				return err
			}
			rep.Problems = append(rep.Problems, urls...)
		}
		for _, p := range rep.Problems {
			fmt.Printf("missing: %s: %s\n", p.Path, p.Reason)
		}
		if !rep.OK() {
			return exitIncomplete{fmt.Sprintf("NOT offline-ready: %d of %d paths missing or damaged", len(rep.Problems), rep.Paths)}
		}
		fmt.Printf("offline-ready: %d paths, %s\n", rep.Paths, prefetch.HumanBytes(rep.Bytes))
		return nil
	})
}

// withReader parses a reader command's flags, opens the data dir without
// owning it, and runs f.
func withReader(fs *pflag.FlagSet, args []string, f func(*dataDir) error) error {
	if err := fs.Parse(args); err != nil {
		return helpIsFine(err)
	}
	dd, err := openReader(fs)
	if err != nil {
		return err
	}
	defer dd.Close()
	return f(dd)
}

func helpIsFine(err error) error {
	if errors.Is(err, pflag.ErrHelp) {
		return nil
	}
	return err
}

// checkPinURLs verifies that every source URL recorded under a pin is kept
// by the forward proxy, whole.
func (d *dataDir) checkPinURLs(ctx context.Context, pin string) ([]prefetch.Problem, error) {
	urls, err := d.idx.URLsOfPin(ctx, pin)
	if err != nil {
		return nil, err
	}
	var problems []prefetch.Problem
	for _, u := range urls {
		kept, err := d.idx.URL(ctx, u)
		if errors.Is(err, index.ErrNotFound) {
			problems = append(problems, prefetch.Problem{Path: u, Reason: "source URL not kept by the proxy"})
			continue
		}
		if err != nil {
			return nil, err
		}
		f, err := d.blobs.Open(urlcache.BlobKey(kept.SHA256))
		if err != nil {
			problems = append(problems, prefetch.Problem{Path: u, Reason: "kept body missing on disk"})
			continue
		}
		fi, err := f.Stat()
		f.Close()
		if err != nil || fi.Size() != kept.Size {
			problems = append(problems, prefetch.Problem{Path: u, Reason: "kept body has the wrong size"})
		}
	}
	return problems, nil
}
