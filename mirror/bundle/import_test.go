package bundle

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixlarder/larder/mirror/nixfmt"
)

type recordingSink struct{ imported []string }

func (s *recordingSink) Import(ctx context.Context, ni *nixfmt.NarInfo, file io.Reader) error {
	s.imported = append(s.imported, ni.StorePath)
	return nil
}

func (s *recordingSink) SetPin(ctx context.Context, name string, roots []string) error { return nil }

func narInfo(hash, url string) string {
	return "StorePath: /nix/store/" + hash + "-x\nURL: " + url + "\nCompression: none\n" +
		"NarHash: sha256:074r44hydx9yjj6byp42flq5m8cz9wrf2dls8h7c5fpjh1mihv4c\nNarSize: 128\n"
}

// Hostile or broken narinfos in a bundle are refused by name before any
// file they point at is opened; good ones still go through.
func TestImportRefusesHostileNarInfos(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h := func(c string) string { return strings.Repeat(c, 32) }
	write(h("1")+".narinfo", "garbage\n")
	write(h("2")+".narinfo", narInfo(h("2"), "/etc/passwd"))
	write(h("3")+".narinfo", narInfo(h("3"), "http://evil.example/nar/x.nar"))
	write(h("4")+".narinfo", narInfo(h("4"), "nar/../../etc/passwd"))
	write(h("5")+".narinfo", narInfo(h("5"), "nar/absent.nar"))
	os.MkdirAll(filepath.Join(dir, "nar"), 0o755)
	write("nar/good.nar", "not checked by this fake sink")
	write(h("6")+".narinfo", narInfo(h("6"), "nar/good.nar"))

	sink := &recordingSink{}
	rep, err := Import(context.Background(), sink, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Refused) != 5 || rep.Imported != 1 || len(sink.imported) != 1 || !strings.Contains(sink.imported[0], h("6")) {
		t.Fatalf("refused %v, imported %v", rep.Refused, sink.imported)
	}
	if _, err := Import(context.Background(), sink, t.TempDir(), nil); err == nil {
		t.Fatal("an empty directory imported without complaint")
	}
}
