package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nixlarder/larder/prefetch"
	"github.com/nixlarder/larder/serve"
)

// runGC collects garbage on a data dir now (a server also does it by itself
// with --max-size); --dry-run prints what would go and why.
func runGC(args []string) error {
	fs := serveFlags("gc")
	dry := fs.Bool("dry-run", false, "print what would be evicted, change nothing")
	if err := fs.Parse(args); err != nil {
		return helpIsFine(err)
	}
	cfg, err := configFrom(fs)
	if err != nil {
		return err
	}
	if cfg.MaxSize <= 0 {
		return errors.New("larder gc needs --max-size (or max-size in the config file)")
	}
	dd, err := openDataDir(cfg, newLogger("warn"), false)
	if err != nil {
		return err
	}
	defer dd.Close()
	ctx := context.Background()
	plan, err := dd.mirror.PlanGC(ctx, false)
	if !*dry && err == nil {
		plan, err = dd.mirror.RunGC(ctx, false)
	}
	if err != nil {
		return err
	}
	fmt.Println(plan)
	for _, v := range plan.Victims {
		fmt.Printf("  %s  %s  last used %s  %v\n", v.NarHash, prefetch.HumanBytes(v.Bytes), v.LastAccess.Format(time.DateTime), v.Paths)
	}
	if plan.PinsOverLimit {
		fmt.Fprintf(os.Stderr, "WARNING: pinned closures alone (%s) exceed --max-size (%s); pins are never evicted\n",
			prefetch.HumanBytes(plan.Pinned), prefetch.HumanBytes(plan.Limit))
	}
	return nil
}

// runVerify re-hashes every stored NAR; --repair quarantines damaged ones so
// they are fetched again on demand.
func runVerify(args []string) error {
	fs := readerFlags("verify")
	repair := fs.Bool("repair", false, "quarantine damaged files and forget them (they are refetched on demand)")
	return withReader(fs, args, func(dd *dataDir) error {
		rep, err := dd.mirror.Verify(context.Background(), *repair, nil)
		if err != nil {
			return err
		}
		for _, d := range rep.Damaged {
			fmt.Printf("damaged: %s: %s\n", d.Key, d.Reason)
			if d.QuarantinedAs != "" {
				fmt.Printf("  quarantined as %s\n", d.QuarantinedAs)
			}
		}
		fmt.Printf("%d NAR files, %s verified; %d damaged\n", rep.Files, prefetch.HumanBytes(rep.Bytes), len(rep.Damaged))
		if len(rep.Damaged) > 0 && !*repair {
			return exitIncomplete{"damaged NAR files found (run with --repair)"}
		}
		return nil
	})
}

// quickPins lists pins with sizes-only checks, as the status figures use.
func quickPins(svc *prefetch.Service) func(context.Context) ([]prefetch.PinStatus, error) {
	return func(ctx context.Context) ([]prefetch.PinStatus, error) { return svc.PinStatuses(ctx, false) }
}

// runStats prints the status page's figures from a data dir.
func runStats(args []string) error {
	fs := readerFlags("stats")
	return withReader(fs, args, func(dd *dataDir) error {
		st, err := serve.BuildStatus(context.Background(), dd.idx, dd.mirror.StoreUsage, quickPins(dd.service()), nil)
		if err != nil {
			return err
		}
		fmt.Print(st.Text())
		return nil
	})
}
