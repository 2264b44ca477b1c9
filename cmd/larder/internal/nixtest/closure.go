package nixtest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// ClosureSpec shapes a test closure: Paths derivations, each holding
// FileBytes of real library bytes (so compression behaves as in life).
type ClosureSpec struct {
	Paths     int
	FileBytes int
}

// Closure is a built closure: Root references, directly or not, all Paths.
type Closure struct {
	Root  string
	Paths []string
}

// BuildClosure builds a fresh closure (unique names, so tests sharing the
// machine's /nix/store never collide) and returns it.
func BuildClosure(t testing.TB, e *Env, spec ClosureSpec) Closure {
	t.Helper()
	corpus := Corpus(t)
	expr := closureExpr(nonce(), corpus, spec)
	file := filepath.Join(t.TempDir(), "closure.nix")
	if err := os.WriteFile(file, []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	root := strings.TrimSpace(e.Run(t, "", "nix-build", "--no-out-link", "-A", "root", file))
	paths := strings.Fields(e.Run(t, "", "nix-store", "-qR", root))
	if len(paths) != spec.Paths {
		t.Fatalf("built closure has %d paths, want %d", len(paths), spec.Paths)
	}
	return Closure{Root: root, Paths: paths}
}

func nonce() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// closureExpr writes a derivation graph without nixpkgs, shaped like real
// closures: a tree (path i refers to 2i+1 and 2i+2) whose every node also
// refers to one shared leaf, as everything refers to glibc. p0 is the root.
func closureExpr(nonce, corpus string, spec ClosureSpec) string {
	size := corpusSize(corpus)
	var b strings.Builder
	fmt.Fprintf(&b, "let\n  mk = i: refs: offset: derivation {\n"+
		"    name = \"larder-t-%s-${toString i}\";\n"+
		"    system = builtins.currentSystem;\n    builder = \"/bin/sh\";\n"+
		"    args = [ \"-c\" ''\n      /bin/mkdir $out\n"+
		"      echo %s ${toString i} ${toString refs} > $out/refs\n"+
		"      /usr/bin/tail -c +${toString offset} %s | /usr/bin/head -c %d > $out/data\n    '' ];\n  };\n",
		nonce, nonce, corpus, spec.FileBytes)
	span := max(size-int64(spec.FileBytes), 1)
	leaf := spec.Paths - 1
	for i := 0; i < spec.Paths; i++ {
		var refs []string
		seen := map[int]bool{i: true}
		for _, r := range []int{2*i + 1, 2*i + 2, leaf} {
			if r < spec.Paths && !seen[r] {
				seen[r] = true
				refs = append(refs, fmt.Sprintf("p%d", r))
			}
		}
		offset := (int64(i)*int64(spec.FileBytes)*7+int64(len(nonce)*i*4099))%span + 1
		fmt.Fprintf(&b, "  p%d = mk %d [ %s ] %d;\n", i, i, strings.Join(refs, " "), offset)
	}
	b.WriteString("in { root = p0; }\n")
	return b.String()
}

var (
	corpusOnce sync.Once
	corpusPath string
	corpusErr  error
)

// Corpus returns a file of real shared-library bytes (up to 96 MiB) that
// builders slice their contents from.
func Corpus(t testing.TB) string {
	t.Helper()
	corpusOnce.Do(func() { corpusPath, corpusErr = makeCorpus(96 << 20) })
	if corpusErr != nil {
		t.Fatalf("test corpus: %v", corpusErr)
	}
	return corpusPath
}

func makeCorpus(limit int64) (string, error) {
	path := filepath.Join(os.TempDir(), "larder-nixtest-corpus")
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		return path, nil
	}
	tmp, err := os.CreateTemp(os.TempDir(), "larder-corpus-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	var written int64
	filepath.WalkDir("/usr/lib", func(p string, d os.DirEntry, err error) error {
		if err != nil || written >= limit || !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return nil
		}
		defer f.Close()
		n, _ := io.Copy(tmp, io.LimitReader(f, limit-written))
		written += n
		return nil
	})
	if err := tmp.Chmod(0o644); err != nil {
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if written < 1<<20 {
		return "", fmt.Errorf("only %d bytes of files under /usr/lib", written)
	}
	return path, os.Rename(tmp.Name(), path)
}

func corpusSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 1
	}
	return fi.Size()
}
