// Package mirrortest provides a fault-injecting fake upstream binary cache
// for tests: it serves signed narinfos and NAR files made in memory, counts
// requests, and can truncate, corrupt, reset, stall or fail any URL.
package mirrortest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/nixlarder/larder/mirror/codec"
	"github.com/nixlarder/larder/mirror/nixfmt"
)

// Path is one store path as the upstream offers it.
type Path struct {
	Info *nixfmt.NarInfo
	NAR  []byte // uncompressed
	File []byte // as served (compressed)
}

// MakePath builds a path named name with the given NAR bytes and references
// (basenames), compressed and signed with key.
func MakePath(t testing.TB, key nixfmt.SecretKey, name string, nar []byte, compression string, refs ...string) *Path {
	t.Helper()
	digest := make([]byte, 20)
	rand.Read(digest)
	storePath := nixfmt.StoreDir + "/" + nixfmt.EncodeNix32(digest) + "-" + name
	file := Compress(t, compression, nar)
	narHash := sha256.Sum256(nar)
	fileHash := sha256.Sum256(file)
	ext, _ := codec.Extension(compression)
	ni := &nixfmt.NarInfo{
		StorePath: storePath, URL: "nar/" + nixfmt.EncodeNix32(fileHash[:]) + ".nar" + ext,
		Compression: compression, FileHash: nixfmt.Hash{Algo: "sha256", Digest: fileHash[:]},
		FileSize: uint64(len(file)), NarHash: nixfmt.Hash{Algo: "sha256", Digest: narHash[:]},
		NarSize: uint64(len(nar)), References: refs,
	}
	ni.Sigs = []string{key.SignNarInfo(ni)}
	return &Path{Info: ni, NAR: nar, File: file}
}

// Basename is the store path's basename, for use as a reference.
func (p *Path) Basename() string { return nixfmt.BaseName(p.Info.StorePath) }

// Payload returns n bytes that compress like real files do (text with noise).
func Payload(n int) []byte {
	var b bytes.Buffer
	noise := make([]byte, 64)
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "line %d of a store path payload: /nix/store/%x\n", i, i*7919)
		if i%16 == 0 {
			rand.Read(noise)
			b.Write(noise)
		}
	}
	return b.Bytes()[:n]
}

// Compress compresses data as an upstream would.
func Compress(t testing.TB, compression string, data []byte) []byte {
	switch compression {
	case "none":
		return bytes.Clone(data)
	case "zstd":
		enc, _ := zstd.NewWriter(nil)
		defer enc.Close()
		return enc.EncodeAll(data, nil)
	case "xz", "bzip2", "gzip":
		cmd := exec.Command(map[string]string{"xz": "xz", "bzip2": "bzip2", "gzip": "gzip"}[compression], "-c")
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("compress with %s: %v", compression, err)
		}
		return out
	}
	t.Fatalf("mirrortest: compression %q not supported", compression)
	return nil
}

// Fault is what the upstream does wrong for one URL path.
type Fault int

const (
	OK          Fault = iota
	Status500         // answer 500
	Status404         // answer 404
	Truncate          // send half the body, then close cleanly (no Content-Length)
	Reset             // send half the body with the full Content-Length, then reset
	CorruptByte       // flip one byte in the middle
	SlowHeaders       // wait Delay before answering
	Trickle           // send the body in small pieces with Delay between them
)

// Upstream is a fake binary cache on an httptest.Server.
type Upstream struct {
	*httptest.Server
	Delay time.Duration // for SlowHeaders and Trickle

	mu     sync.Mutex
	files  map[string][]byte // URL path → body
	faults map[string]Fault
	counts map[string]int
}

// NewUpstream starts an empty upstream; it is closed when the test ends.
func NewUpstream(t testing.TB) *Upstream {
	u := &Upstream{files: map[string][]byte{}, faults: map[string]Fault{}, counts: map[string]int{},
		Delay: 50 * time.Millisecond}
	u.files["/nix-cache-info"] = []byte("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n")
	u.Server = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.Close)
	return u
}

// Add publishes paths.
func (u *Upstream) Add(paths ...*Path) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, p := range paths {
		u.files["/"+p.Info.HashPart()+".narinfo"] = p.Info.Bytes()
		u.files["/"+p.Info.URL] = p.File
	}
}

// SetNarInfo replaces the narinfo served for p (for wrong-hash or bad-signature cases).
func (u *Upstream) SetNarInfo(p *Path, text []byte) {
	u.mu.Lock()
	u.files["/"+p.Info.HashPart()+".narinfo"] = text
	u.mu.Unlock()
}

// SetFault sets the fault for a URL path ("/nar/….nar.xz", "/<hash>.narinfo").
func (u *Upstream) SetFault(path string, f Fault) {
	u.mu.Lock()
	u.faults[path] = f
	u.mu.Unlock()
}

// Count is the number of requests seen for a URL path.
func (u *Upstream) Count(path string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.counts[path]
}

// NarPath is the URL path of p's NAR file.
func NarPath(p *Path) string { return "/" + p.Info.URL }

// NarInfoPath is the URL path of p's narinfo.
func NarInfoPath(p *Path) string { return "/" + p.Info.HashPart() + ".narinfo" }

func (u *Upstream) serve(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.counts[r.URL.Path]++
	body, ok := u.files[r.URL.Path]
	fault := u.faults[r.URL.Path]
	u.mu.Unlock()
	if !ok || fault == Status404 {
		http.Error(w, "404", http.StatusNotFound)
		return
	}
	switch fault {
	case Status500:
		http.Error(w, "boom", http.StatusInternalServerError)
		return
	case SlowHeaders:
		time.Sleep(u.Delay)
	case CorruptByte:
		body = bytes.Clone(body)
		body[len(body)/2] ^= 0x01
	}
	if strings.HasSuffix(r.URL.Path, ".narinfo") {
		w.Header().Set("Content-Type", "text/x-nix-narinfo")
	}
	switch fault {
	case Truncate:
		w.Write(body[:len(body)/2])
		return
	case Reset:
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				tc.SetLinger(0) // RST, not FIN
			}
			conn.Close()
		}
		return
	case Trickle:
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		for off := 0; off < len(body); off += 4096 {
			w.Write(body[off:min(off+4096, len(body))])
			w.(http.Flusher).Flush()
			time.Sleep(u.Delay)
		}
		return
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.Write(body)
}

// NarOfFile is the NAR serialisation of a single regular file.
func NarOfFile(contents []byte, executable bool) []byte {
	var b bytes.Buffer
	str := func(s []byte) {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		b.Write(n[:])
		b.Write(s)
		b.Write(make([]byte, (8-len(s)%8)%8))
	}
	for _, s := range []string{"nix-archive-1", "(", "type", "regular"} {
		str([]byte(s))
	}
	if executable {
		str([]byte("executable"))
		str(nil)
	}
	str([]byte("contents"))
	str(contents)
	str([]byte(")"))
	return b.Bytes()
}

// Total is how many requests the upstream received.
func (u *Upstream) Total() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, c := range u.counts {
		n += c
	}
	return n
}

// NarFileName is the file name Larder stores p's NAR under (named by NarHash).
func NarFileName(p *Path) string {
	ext, _ := codec.Extension(p.Info.Compression)
	return nixfmt.EncodeNix32(p.Info.NarHash.Digest) + ".nar" + ext
}

// Unavailable ends a test that needs something this machine lacks: a skip
// on a developer's machine, a failure where the end-to-end tests are
// required (LARDER_E2E=require, or CI), so CI never passes by skipping.
func Unavailable(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("LARDER_E2E") == "require" || os.Getenv("CI") != "" {
		t.Fatalf("required but cannot run: %s", reason)
	}
	t.Skipf("skipping: %s", reason)
}
