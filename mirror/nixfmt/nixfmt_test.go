package nixfmt

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNix32Vector(t *testing.T) {
	d := sha256.Sum256([]byte("abc"))
	const want = "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"
	if got := EncodeNix32(d[:]); got != want {
		t.Fatalf("EncodeNix32 = %s, want %s", got, want)
	}
	back, err := DecodeNix32(want)
	if err != nil || !bytes.Equal(back, d[:]) {
		t.Fatalf("DecodeNix32 = %x, %v", back, err)
	}
	for _, bad := range []string{"e" + want[1:], want[:51], "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"} {
		if _, err := DecodeNix32(bad); err == nil {
			t.Errorf("DecodeNix32(%q) accepted", bad)
		}
	}
}

func TestParseHashEncodings(t *testing.T) {
	d := sha256.Sum256([]byte("abc"))
	want := Hash{"sha256", d[:]}
	for _, s := range []string{
		"sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",
		"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		"sha256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=",
		"sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=",
	} {
		h, err := ParseHash(s)
		if err != nil || !h.Equal(want) {
			t.Errorf("ParseHash(%q) = %v, %v", s, h, err)
		}
	}
	for _, s := range []string{"", "sha256", "sha257:00", "sha256:abc", "md5-xxxx", "sha256:" + strings.Repeat("g", 64)} {
		if _, err := ParseHash(s); err == nil {
			t.Errorf("ParseHash(%q) accepted", s)
		}
	}
}

func readGolden(t *testing.T) map[string][]byte {
	t.Helper()
	files, _ := filepath.Glob("testdata/nix-written/*.narinfo")
	if len(files) != 5 {
		t.Fatalf("want 5 golden narinfos, found %d", len(files))
	}
	out := map[string][]byte{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".narinfo")] = data
	}
	return out
}

func goldenKey(t *testing.T) SecretKey {
	t.Helper()
	data, err := os.ReadFile("testdata/golden-1.sec")
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseSecretKey(string(data))
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := os.ReadFile("testdata/golden-1.pub")
	if k.Public().String() != string(pub) {
		t.Fatalf("public half %s does not match Nix's %s", k.Public(), pub)
	}
	return k
}

// Nix's narinfos survive a parse and render byte for byte, and signing them
// with the same key gives exactly the Sig Nix wrote (Ed25519 is deterministic).
func TestGoldenNarInfosRoundTripAndSign(t *testing.T) {
	key := goldenKey(t)
	for hash, data := range readGolden(t) {
		ni, err := ParseNarInfo(data)
		if err != nil {
			t.Fatalf("%s: %v", hash, err)
		}
		if ni.HashPart() != hash {
			t.Errorf("HashPart %s, want %s", ni.HashPart(), hash)
		}
		if got := ni.Bytes(); !bytes.Equal(got, data) {
			t.Errorf("%s: rendered\n%s\nwant\n%s", hash, got, data)
		}
		signed := len(ni.Sigs) > 0
		if signed {
			if got := key.SignNarInfo(ni); got != ni.Sigs[0] {
				t.Errorf("%s: our signature %s, Nix's %s", hash, got, ni.Sigs[0])
			}
		}
		if VerifyNarInfo(ni, []PublicKey{key.Public()}) != signed {
			t.Errorf("%s: VerifyNarInfo = %v, want %v", hash, !signed, signed)
		}
		if ni.CA != "" {
			if err := ni.VerifyCA(); err != nil {
				t.Errorf("%s: VerifyCA: %v", hash, err)
			}
		}
	}
}

func TestVerifyRejectsTampering(t *testing.T) {
	key := goldenKey(t)
	gold := readGolden(t)
	ni, _ := ParseNarInfo(gold["y1cg19sl6s7zzaqz050qwmbdjafgk1nc"])
	keys := []PublicKey{key.Public()}
	tamper := map[string]func(n *NarInfo){
		"NarSize":    func(n *NarInfo) { n.NarSize++ },
		"NarHash":    func(n *NarInfo) { n.NarHash.Digest = bytes.Repeat([]byte{1}, 32) },
		"References": func(n *NarInfo) { n.References = n.References[:1] },
		"StorePath":  func(n *NarInfo) { n.StorePath = strings.Replace(n.StorePath, "root", "rooT", 1) },
	}
	for name, f := range tamper {
		c := *ni
		c.References = append([]string(nil), ni.References...)
		f(&c)
		if VerifyNarInfo(&c, keys) {
			t.Errorf("signature still valid after changing %s", name)
		}
	}
	// Not covered by the signature: a proxy may change these.
	c := *ni
	c.URL, c.Compression, c.FileSize = "nar/x.nar.zst", "zstd", 1
	if !VerifyNarInfo(&c, keys) {
		t.Error("URL/Compression/FileSize should not be signed")
	}
	other, _ := GenerateKey("golden-1") // same name, different key
	if VerifyNarInfo(ni, []PublicKey{other.Public()}) {
		t.Error("a key with the same name but other bytes verified")
	}
}

func TestVerifyCARejectsWrongPath(t *testing.T) {
	gold := readGolden(t)
	for _, h := range []string{"hwvhz5inan8liasc7li3kv49a8sw1kzz", "b19avc40qrnhvgjf4z0csfapll4i5jys", "zbwjk1b1y6abmh00zjbxs6p9xs5plnjy"} {
		ni, _ := ParseNarInfo(gold[h])
		c := *ni
		c.CA = strings.Replace(ni.CA, ni.CA[len(ni.CA)-4:], "0000", 1)
		if err := c.VerifyCA(); err == nil {
			t.Errorf("%s: a different CA hash verified", h)
		}
		c = *ni
		c.References = []string{"3a8m9afa80q5bs17hna9mnsd1sw3rfim-larder-golden-dep"}
		if err := c.VerifyCA(); err == nil {
			t.Errorf("%s: an added reference still verified", h)
		}
	}
	ni, _ := ParseNarInfo(gold["3a8m9afa80q5bs17hna9mnsd1sw3rfim"])
	if err := ni.VerifyCA(); err == nil {
		t.Error("input-addressed path passed VerifyCA")
	}
}

const validNarInfo = "StorePath: /nix/store/3a8m9afa80q5bs17hna9mnsd1sw3rfim-larder-golden-dep\n" +
	"URL: nar/05y1501ry2flbl93rz1ac6pn7iw5mmgydrf3bybv2n3q1q3hi81w.nar.xz\n" +
	"NarHash: sha256:074r44hydx9yjj6byp42flq5m8cz9wrf2dls8h7c5fpjh1mihv4c\n" +
	"NarSize: 128\n"

func TestParseNarInfoQuirks(t *testing.T) {
	ni, err := ParseNarInfo([]byte(validNarInfo + "System: x86_64-linux\nFileSize: 1\nFileSize: 2\nSig: a:b\nSig: c:d\nSig: a:b\nReferences: \n"))
	if err != nil {
		t.Fatal(err)
	}
	if ni.Compression != "bzip2" || ni.FileSize != 2 || len(ni.Sigs) != 2 || ni.References != nil {
		t.Fatalf("defaults/last-wins/sig set wrong: %+v", ni)
	}
}

func TestParseNarInfoRejects(t *testing.T) {
	cases := map[string]string{
		"no trailing newline":    strings.TrimSuffix(validNarInfo, "\n"),
		"CRLF":                   strings.ReplaceAll(validNarInfo, "\n", "\r\n"),
		"missing StorePath":      strings.SplitN(validNarInfo, "\n", 2)[1],
		"missing NarHash":        strings.Replace(validNarInfo, "NarHash", "Nope", 1),
		"zero NarSize":           strings.Replace(validNarInfo, "NarSize: 128", "NarSize: 0", 1),
		"negative NarSize":       strings.Replace(validNarInfo, "NarSize: 128", "NarSize: -1", 1),
		"bad store dir":          strings.Replace(validNarInfo, "/nix/store/", "/gnu/store/", 1),
		"traversal in path":      strings.Replace(validNarInfo, "larder-golden-dep", "../../etc", 1),
		"references twice":       validNarInfo + "References: \nReferences: \n",
		"CA twice":               validNarInfo + "CA: text:sha256:x\nCA: text:sha256:x\n",
		"bad reference":          validNarInfo + "References: ../etc/passwd\n",
		"unknown compression":    validNarInfo + "Compression: rar\n",
		"md5 NarHash":            strings.Replace(validNarInfo, "NarHash: sha256:074r44hydx9yjj6byp42flq5m8cz9wrf2dls8h7c5fpjh1mihv4c", "NarHash: md5:00000000000000000000000000000000", 1),
		"URL dot-dot":            strings.Replace(validNarInfo, "URL: nar/", "URL: nar/../../secret/", 1),
		"URL encoded dot-dot":    strings.Replace(validNarInfo, "URL: nar/", "URL: nar/%2e%2e/", 1),
		"URL with space":         strings.Replace(validNarInfo, "URL: nar/", "URL: nar/ x", 1),
		"URL with backslash":     strings.Replace(validNarInfo, "URL: nar/", "URL: nar\\..\\", 1),
		"line without colon":     validNarInfo + "garbage\n",
		"deriver not a drv":      validNarInfo + "Deriver: 23nrczjz38099h37xs319z3mypxncj9z-x\n",
		"signature without name": validNarInfo + "Sig: abc\n",
		"oversize":               validNarInfo + "X: " + strings.Repeat("a", MaxNarInfoSize) + "\n",
	}
	for name, text := range cases {
		if _, err := ParseNarInfo([]byte(text)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestKeysInterchangeWithNix(t *testing.T) {
	k, err := GenerateKey("larder-test-1")
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseSecretKey(k.String())
	if err != nil || back.String() != k.String() {
		t.Fatalf("secret key round trip: %v", err)
	}
	pub, err := ParsePublicKey(k.Public().String())
	if err != nil || pub.String() != k.Public().String() {
		t.Fatalf("public key round trip: %v", err)
	}
	for _, bad := range []string{"", "nocolon", ":AAAA", "x:!!!", "x:" + strings.Repeat("A", 10)} {
		if _, err := ParsePublicKey(bad); err == nil {
			t.Errorf("ParsePublicKey(%q) accepted", bad)
		}
		if _, err := ParseSecretKey(bad); err == nil {
			t.Errorf("ParseSecretKey(%q) accepted", bad)
		}
	}
}

func FuzzParseNarInfo(f *testing.F) {
	f.Add([]byte(validNarInfo))
	f.Add([]byte(validNarInfo + "References: a b\nCA: fixed:r:sha256:x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ni, err := ParseNarInfo(data)
		if err != nil {
			return
		}
		// Whatever parses must render to something that parses the same.
		again, err := ParseNarInfo(ni.Bytes())
		if err != nil {
			t.Fatalf("rendered narinfo does not parse: %v\n%s", err, ni.Bytes())
		}
		if again.Fingerprint() != ni.Fingerprint() || again.URL != ni.URL {
			t.Fatalf("round trip changed the narinfo")
		}
	})
}
