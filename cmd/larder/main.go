// Command larder is an offline mirror and caching proxy for Nix binary
// caches. This file is wiring only: flags, the parts, the subcommands.
package main

import (
	"fmt"
	"os"
)

const usage = `larder — an offline mirror and caching proxy for Nix binary caches

Usage:
  larder serve [flags]                        run the cache (see larder serve --help)
  larder keygen NAME SECRET_FILE PUBLIC_FILE  make a signing key pair (Nix's format)
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "serve":
		err = runServe(args)
	case "keygen":
		err = runKeygen(args)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		err = fmt.Errorf("unknown command %q\n\n%s", cmd, usage)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "larder:", err)
		os.Exit(1)
	}
}
