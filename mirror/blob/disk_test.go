package blob

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestCommitOpenRemove(t *testing.T) {
	d, err := NewDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tmp, err := d.CreateTemp()
	if err != nil {
		t.Fatal(err)
	}
	tmp.WriteString("nar bytes")
	if err := d.Commit(tmp, "nar/abcdef.nar.xz"); err != nil {
		t.Fatal(err)
	}
	tmp.Close()
	f, err := d.Open("nar/abcdef.nar.xz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != "nar bytes" {
		t.Fatalf("read %q", b)
	}
	if err := d.Remove("nar/abcdef.nar.xz"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Open("nar/abcdef.nar.xz"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after remove: %v", err)
	}
}

func TestHostileKeysRefused(t *testing.T) {
	d, _ := NewDisk(t.TempDir())
	for _, key := range []string{"../etc/passwd", "nar/../../x", "nar/.hidden", "tmp/blob-1", "nar/a/b", "nar", "/abs/xyz", "nar/x\x00y"} {
		if _, err := d.Open(key); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("key %q: got %v, want an invalid-key error", key, err)
		}
	}
}

// Temp files left by a crash are removed when the store opens again.
func TestStartCleansTemp(t *testing.T) {
	root := t.TempDir()
	d, _ := NewDisk(root)
	tmp, _ := d.CreateTemp()
	tmp.WriteString("partial")
	tmp.Close()
	if _, err := NewDisk(root); err != nil {
		t.Fatal(err)
	}
	left, _ := os.ReadDir(filepath.Join(root, "tmp"))
	if len(left) != 0 {
		t.Fatalf("temp files survived restart: %v", left)
	}
}
