package main

import (
	"context"
	"errors"
)

// flakeRoots evaluates an installable with the local nix.
func flakeRoots(ctx context.Context, installable string, inputs, buildDeps bool) ([]string, error) {
	return nil, errors.New("--flake: not implemented yet")
}
