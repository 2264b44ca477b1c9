package main

import (
	"context"
	"fmt"

	"github.com/nixlarder/larder/prefetch"
)

// target is the Larder a prefetch runs in: a server over HTTP, or the
// in-process prefetch.Service.
type target interface {
	prefetch.Target
	Prefetch(ctx context.Context, req *prefetch.Request, progress func(prefetch.Progress)) (*prefetch.Report, error)
	PinURLs(ctx context.Context, pin string, urls []string) error
}

// planFlakes evaluates each installable and returns the roots to mirror and
// the source URLs fixed-output derivations fetched, printing what was added
// locally and what clients will build.
func planFlakes(ctx context.Context, t target, nix prefetch.LocalNix, installables []string, opts prefetch.PlanOptions) ([]string, []string, error) {
	var roots, urls []string
	for _, inst := range installables {
		plan, err := prefetch.PlanInstallable(ctx, nix, t, inst, opts)
		if err != nil {
			return nil, nil, err
		}
		urls = append(urls, plan.URLs...)
		fmt.Printf("%s: %d paths to mirror, %d added from the local store\n", inst, len(plan.Roots), len(plan.Added))
		for _, p := range plan.WillBuild {
			fmt.Printf("  will be built; inputs present: %s\n", p)
		}
		roots = append(roots, plan.Roots...)
	}
	return roots, urls, nil
}
