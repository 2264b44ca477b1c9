package prefetch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
)

// LocalNix runs the local Nix (2.8 or later) for what only it knows:
// evaluating installables, derivation graphs, realising fixed-output
// derivations, and dumping paths of the local store.
type LocalNix struct {
	Env []string // extra environment, e.g. NIX_CONFIG
}

func (n LocalNix) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	if name == "nix" {
		// The commands used are experimental in Nix 2.8: enable them here
		// rather than ask users to edit nix.conf.
		args = append([]string{"--extra-experimental-features", "nix-command flakes"}, args...)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(cmd.Environ(), n.Env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, lastLine(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	var keep []string
	for _, l := range lines {
		if strings.Contains(l, "error") || len(keep) > 0 {
			keep = append(keep, strings.TrimSpace(l))
		}
	}
	if len(keep) == 0 {
		return lines[len(lines)-1]
	}
	return strings.Join(keep, " ")
}

// Derivation evaluates an installable (instantiating, not building) and
// returns its derivation path.
func (n LocalNix) Derivation(ctx context.Context, installable string) (string, error) {
	out, err := n.run(ctx, "nix", "path-info", "--derivation", installable)
	if err != nil {
		return "", fmt.Errorf("%w: evaluating %s: %v", ErrBadInput, installable, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Drv is one derivation of a build graph.
type Drv struct {
	Outputs   map[string]DrvOutput `json:"outputs"`
	InputDrvs map[string][]string  `json:"inputDrvs"`
	InputSrcs []string             `json:"inputSrcs"`
	Env       map[string]string    `json:"env"`
}

// URLs are the sources a fixed-output derivation says it fetches (the
// `urls` or `url` attribute of fetchurl and friends).
func (d *Drv) URLs() []string {
	if u := strings.Fields(d.Env["urls"]); len(u) > 0 {
		return u
	}
	return strings.Fields(d.Env["url"])
}

// DrvOutput is an output; Hash is set for fixed-output derivations.
type DrvOutput struct {
	Path string `json:"path"`
	Hash string `json:"hash"`
}

// Fixed reports a fixed-output derivation (sources fetched from the network).
func (d *Drv) Fixed() bool {
	for _, o := range d.Outputs {
		if o.Hash != "" {
			return true
		}
	}
	return false
}

// Graph returns every derivation in the build closure of drv.
func (n LocalNix) Graph(ctx context.Context, drv string) (map[string]*Drv, error) {
	out, err := n.run(ctx, "nix", "show-derivation", "-r", drv)
	if err != nil {
		return nil, err
	}
	graph := map[string]*Drv{}
	if err := json.Unmarshal(out, &graph); err != nil {
		return nil, fmt.Errorf("nix show-derivation: %w", err)
	}
	return graph, nil
}

// FlakeInputs lists the store paths of a flake's source and its locked
// inputs, recursively (nix flake archive --json --dry-run).
func (n LocalNix) FlakeInputs(ctx context.Context, flakeRef string) ([]string, error) {
	out, err := n.run(ctx, "nix", "flake", "archive", "--json", "--dry-run", flakeRef)
	if err != nil {
		return nil, fmt.Errorf("%w: flake inputs of %s: %v", ErrBadInput, flakeRef, err)
	}
	type node struct {
		Path   string           `json:"path"`
		Inputs map[string]*node `json:"inputs"`
	}
	var root node
	if err := json.Unmarshal(out, &root); err != nil {
		return nil, fmt.Errorf("nix flake archive: %w", err)
	}
	var paths []string
	var walk func(*node)
	walk = func(nd *node) {
		if nd == nil {
			return
		}
		if nd.Path != "" {
			paths = append(paths, nd.Path)
		}
		for _, in := range nd.Inputs {
			walk(in)
		}
	}
	walk(&root)
	return paths, nil
}

// Realise builds (for a fixed-output derivation: fetches) a derivation in
// the local store.
func (n LocalNix) Realise(ctx context.Context, drv string) error {
	_, err := n.run(ctx, "nix-store", "--realise", drv)
	return err
}

// PathInfo is what `nix path-info --json` says of a local path.
type PathInfo struct {
	Path       string   `json:"path"`
	NarHash    string   `json:"narHash"`
	NarSize    uint64   `json:"narSize"`
	References []string `json:"references"`
	CA         string   `json:"ca"`
	Valid      *bool    `json:"valid"`
}

// PathInfos asks the local store about paths; invalid ones come back with
// Valid false.
func (n LocalNix) PathInfos(ctx context.Context, paths []string) ([]PathInfo, error) {
	out, err := n.run(ctx, "nix", append([]string{"path-info", "--json"}, paths...)...)
	if err != nil {
		return nil, err
	}
	var infos []PathInfo
	if err := json.Unmarshal(out, &infos); err != nil {
		return nil, fmt.Errorf("nix path-info --json: %w", err)
	}
	return infos, nil
}

// Dump streams the NAR serialisation of a local store path.
func (n LocalNix) Dump(ctx context.Context, path string) (io.ReadCloser, func() error, error) {
	cmd := exec.CommandContext(ctx, "nix-store", "--dump", path)
	cmd.Env = append(cmd.Environ(), n.Env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	wait := func() error {
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("nix-store --dump %s: %v: %s", path, err, strings.TrimSpace(stderr.String()))
		}
		return nil
	}
	return out, wait, nil
}
