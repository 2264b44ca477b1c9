package prefetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/nixlarder/larder/mirror/nixfmt"
)

// Target is the Larder a plan is carried out against: a server, or the
// in-process Service.
type Target interface {
	Missing(ctx context.Context, paths []string) ([]string, error)
	AddCA(ctx context.Context, ni *nixfmt.NarInfo, nar io.Reader) error
}

// PlanOptions widen what an installable brings in.
type PlanOptions struct {
	FlakeInputs bool // the flake's locked inputs, so evaluation works offline
	BuildDeps   bool // the whole build-time closure
}

// Plan is what an installable needs for offline use.
type Plan struct {
	Roots     []string // to mirror (from upstreams, or already added locally)
	Added     []string // content-addressed paths added to Larder from the local store
	WillBuild []string // outputs no upstream has: clients build them from mirrored inputs
	URLs      []string // sources realised here (through Larder's proxy, if the local Nix uses it)
}

// PlanInstallable evaluates an installable with the local Nix and works out
// what to mirror. Outputs some upstream has are mirrored. Content-addressed
// paths no upstream has (flake inputs, sources, fixed-output results,
// realised here if needed) are added to Larder from the local store, which
// needs no trust: their bytes prove their path. Any other missing output is
// reported as "will be built" and its own inputs are planned in its place.
func PlanInstallable(ctx context.Context, nix LocalNix, t Target, installable string, opts PlanOptions) (*Plan, error) {
	drv, err := nix.Derivation(ctx, installable)
	if err != nil {
		return nil, err
	}
	graph, err := nix.Graph(ctx, drv)
	if err != nil {
		return nil, err
	}
	pl := &planner{nix: nix, t: t, graph: graph, plan: &Plan{}, added: map[string]bool{}}
	if opts.FlakeInputs {
		inputs, err := nix.FlakeInputs(ctx, flakeRef(installable))
		if err != nil {
			return nil, err
		}
		pl.extraSrcs = inputs
	}
	if err := pl.lookupAll(ctx); err != nil {
		return nil, err
	}
	if err := pl.sources(ctx, pl.extraSrcs); err != nil {
		return nil, err
	}
	queue := []string{drv}
	if opts.BuildDeps {
		queue = sortedKeys(graph)
	}
	if err := pl.walk(ctx, queue, opts.BuildDeps); err != nil {
		return nil, err
	}
	pl.plan.Roots = dedupe(pl.plan.Roots)
	return pl.plan, nil
}

// flakeRef is the flake part of an installable ("path#attr" → "path").
func flakeRef(installable string) string {
	ref, _, _ := strings.Cut(installable, "#")
	if ref == "" {
		return "."
	}
	return ref
}

type planner struct {
	nix       LocalNix
	t         Target
	graph     map[string]*Drv
	extraSrcs []string
	missing   map[string]bool
	added     map[string]bool
	plan      *Plan
}

// lookupAll asks Larder once about every output and source in the graph.
func (pl *planner) lookupAll(ctx context.Context) error {
	var all []string
	for _, d := range pl.graph {
		for _, o := range d.Outputs {
			all = append(all, o.Path)
		}
		all = append(all, d.InputSrcs...)
	}
	all = dedupe(append(all, pl.extraSrcs...))
	missing, err := pl.t.Missing(ctx, all)
	if err != nil {
		return err
	}
	pl.missing = map[string]bool{}
	for _, m := range missing {
		pl.missing[m] = true
	}
	return nil
}

func (pl *planner) walk(ctx context.Context, queue []string, allSrcs bool) error {
	seen := map[string]bool{}
	for len(queue) > 0 {
		path := queue[0]
		queue = queue[1:]
		d := pl.graph[path]
		if seen[path] || d == nil {
			continue
		}
		seen[path] = true
		if allSrcs {
			if err := pl.sources(ctx, d.InputSrcs); err != nil {
				return err
			}
		}
		expand, err := pl.outputs(ctx, path, d)
		if err != nil {
			return err
		}
		if expand {
			if err := pl.sources(ctx, d.InputSrcs); err != nil {
				return err
			}
			queue = append(queue, sortedKeys(d.InputDrvs)...)
		}
	}
	return nil
}

// outputs plans a derivation's outputs and says whether its inputs are
// needed (it will be built on the client).
func (pl *planner) outputs(ctx context.Context, drvPath string, d *Drv) (bool, error) {
	expand := false
	for _, name := range sortedKeys(d.Outputs) {
		out := d.Outputs[name].Path
		switch {
		case !pl.missing[out]:
			pl.plan.Roots = append(pl.plan.Roots, out)
		case d.Fixed():
			if err := pl.nix.Realise(ctx, drvPath); err != nil {
				return false, fmt.Errorf("realising fixed-output %s: %w", drvPath, err)
			}
			pl.plan.URLs = append(pl.plan.URLs, d.URLs()...)
			if err := pl.addLocal(ctx, out); err != nil {
				return false, err
			}
		default:
			pl.plan.WillBuild = append(pl.plan.WillBuild, out)
			expand = true
		}
	}
	return expand, nil
}

// sources mirrors sources an upstream has and adds the others from the
// local store.
func (pl *planner) sources(ctx context.Context, srcs []string) error {
	for _, s := range srcs {
		if !pl.missing[s] {
			pl.plan.Roots = append(pl.plan.Roots, s)
			continue
		}
		if err := pl.addLocal(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// addLocal adds a content-addressed path (references first) to Larder.
func (pl *planner) addLocal(ctx context.Context, path string) error {
	if pl.added[path] {
		return nil
	}
	infos, err := pl.nix.PathInfos(ctx, []string{path})
	if err != nil {
		return err
	}
	if len(infos) != 1 || (infos[0].Valid != nil && !*infos[0].Valid) {
		return fmt.Errorf("%s is not in the local store", path)
	}
	info := infos[0]
	if info.CA == "" {
		return fmt.Errorf("%s: no upstream has it and it is not content-addressed, so Larder cannot take it from this machine without trusting it", path)
	}
	pl.added[path] = true
	for _, r := range info.References {
		if r != path && pl.missing[r] {
			if err := pl.addLocal(ctx, r); err != nil {
				return err
			}
		}
	}
	ni, err := narInfoOf(info)
	if err != nil {
		return err
	}
	nar, wait, err := pl.nix.Dump(ctx, path)
	if err != nil {
		return err
	}
	addErr := pl.t.AddCA(ctx, ni, nar)
	nar.Close()
	if err := errors.Join(addErr, wait()); err != nil {
		return fmt.Errorf("adding %s to Larder: %w", path, err)
	}
	pl.plan.Added = append(pl.plan.Added, path)
	pl.plan.Roots = append(pl.plan.Roots, path)
	return nil
}

func narInfoOf(info PathInfo) (*nixfmt.NarInfo, error) {
	h, err := nixfmt.ParseHash(info.NarHash)
	if err != nil {
		return nil, err
	}
	ni := &nixfmt.NarInfo{StorePath: info.Path, URL: "nar/local.nar", Compression: "none",
		NarHash: h, NarSize: info.NarSize, CA: info.CA}
	for _, r := range info.References {
		ni.References = append(ni.References, nixfmt.BaseName(r))
	}
	return ni, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func dedupe(list []string) []string {
	seen := map[string]bool{}
	out := list[:0]
	for _, s := range list {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
