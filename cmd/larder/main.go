// Command larder is an offline mirror and caching proxy for Nix binary
// caches. This file is wiring only: flags, the parts, the subcommands.
package main

import (
	"errors"
	"fmt"
	"os"
)

const usage = `larder — an offline mirror and caching proxy for Nix binary caches

Usage:
  larder serve [flags]                        run the cache (see larder serve --help)
  larder prefetch [flags] [PATH...]           mirror whole closures ahead of time (--pin NAME to keep them)
  larder check [--pin NAME | PATH...]         say whether closures would substitute offline (exit 1: no)
  larder pins [rm NAME]                       list pins with size and offline-ready status; remove one
  larder export (--pin NAME | PATH...) [--exclude INVENTORY] OUT_DIR
                                              write closures as a file:// cache + manifest (air gap)
  larder import [--trusted-key KEY...] IN_DIR  verify and ingest a bundle or any file:// cache
  larder inventory                            list what this Larder holds (for export --exclude)
  larder stats                                hit ratio, bytes saved, disk use, pins, recent prefetches
  larder gc --max-size SIZE [--dry-run]       evict least recently used, unpinned NARs now
  larder verify [--repair]                    re-hash every stored NAR; quarantine damaged ones
  larder ca                                   print the forward proxy's CA certificate (for NIX_SSL_CERT_FILE)
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
	case "prefetch":
		err = runPrefetch(args)
	case "check":
		err = runCheck(args)
	case "pins":
		err = runPins(args)
	case "export":
		err = runExport(args)
	case "import":
		err = runImport(args)
	case "inventory":
		err = runInventory(args)
	case "stats":
		err = runStats(args)
	case "gc":
		err = runGC(args)
	case "verify":
		err = runVerify(args)
	case "ca":
		err = runCA(args)
	case "keygen":
		err = runKeygen(args)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "larder: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	var incomplete exitIncomplete
	switch {
	case err == nil:
	case errors.As(err, &incomplete):
		fmt.Fprintln(os.Stderr, "larder:", err)
		os.Exit(1)
	default:
		fmt.Fprintln(os.Stderr, "larder:", err)
		os.Exit(2)
	}
}
