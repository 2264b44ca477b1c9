package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nixlarder/larder/cmd/larder/internal/nixtest"
)

// A fixed-output derivation whose builder downloads its source with curl
// builds in a fresh store through Larder's proxy (https_proxy, Larder's CA in
// NIX_SSL_CERT_FILE); with the origin gone, it builds again in another
// fresh store from what the proxy kept.
func TestProxyKeepsFixedOutputSources(t *testing.T) {
	nixtest.Require(t)
	nonce := fmt.Sprint(time.Now().UnixNano())
	source := "a source tarball only the origin has " + nonce + "\n"
	sum := sha256.Sum256([]byte(source))
	dir := t.TempDir()
	origin, originCert, originPort, fetches := tlsOrigin(t, dir, source)
	defer origin.Close()

	dataDir := t.TempDir()
	proxyAddr := freeAddr(t)
	// Larder trusts the test origin's certificate the way Go programs do.
	startLarderEnv(t, []string{"SSL_CERT_FILE=" + originCert}, dataDir,
		"--proxy-listen", proxyAddr, "--proxy-connect-port", originPort, "--upstream", "http://127.0.0.1:1")
	certs := filepath.Join(dir, "certs")
	writeFile(t, filepath.Join(certs, "ca.pem"), mustRun(t, "ca", "--data-dir", dataDir))

	expr := filepath.Join(dir, "src.nix")
	writeFile(t, expr, fmt.Sprintf(`derivation {
  name = "larder-proxied-src-%s";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "/usr/bin/curl --fail --silent --show-error --cacert $NIX_SSL_CERT_FILE -o $out %s/src.tar" ];
  outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "%s";
  impureEnvVars = [ "https_proxy" "NIX_SSL_CERT_FILE" ];
}`, nonce, origin.URL, hex.EncodeToString(sum[:])))

	e := nixtest.NewEnv(t).WithEnv("https_proxy=http://"+proxyAddr, "NIX_SSL_CERT_FILE="+filepath.Join(certs, "ca.pem"))
	conf := "sandbox = true\nsandbox-paths = /bin /usr /lib /lib64 " + certs + "\n"
	build := func(what string) {
		t.Helper()
		store := t.TempDir()
		out, err := e.Try(conf, "nix-build", "--no-out-link", "--store", "local?root="+store, expr)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		data, err := os.ReadFile(filepath.Join(store, strings.TrimSpace(out)))
		if err != nil || string(data) != source {
			t.Fatalf("%s: built %q, %v", what, data, err)
		}
	}
	build("build through the proxy")
	origin.Close()
	build("offline rebuild from the proxy's copy")
	if fetches.Load() != 1 {
		t.Fatalf("%d origin fetches, want 1", fetches.Load())
	}
}

// prefetch --build-deps realises a fixed-output source through the server's
// proxy: its URL is kept and recorded under the pin, `check` covers it, and
// a bundle carries it to an air-gapped Larder whose proxy serves it offline.
func TestProxySourcesPinnedAndBundled(t *testing.T) {
	nixtest.Require(t)
	nonce := fmt.Sprint(time.Now().UnixNano())
	source := "pinned source " + nonce + "\n"
	sum := sha256.Sum256([]byte(source))
	dir := t.TempDir()
	origin, originCert, originPort, fetches := tlsOrigin(t, dir, source)
	defer origin.Close()
	srcURL := origin.URL + "/src.txt"

	flakeDir := filepath.Join(dir, "app")
	writeFile(t, filepath.Join(flakeDir, "flake.nix"), fmt.Sprintf(`{
  outputs = { self }: let
    src = derivation {
      name = "larder-pinned-src-%[1]s.txt"; system = "builtin"; builder = "builtin:fetchurl";
      url = "%[2]s"; urls = [ "%[2]s" ];
      outputHashAlgo = "sha256"; outputHash = "%[3]s"; outputHashMode = "flat";
      executable = false; unpack = false;
    };
  in {
    packages.x86_64-linux.default = derivation {
      name = "larder-pinned-app-%[1]s"; system = "x86_64-linux"; builder = "/bin/sh";
      args = [ "-c" "/bin/cat ${src} > $out" ];
    };
  };
}`, nonce, srcURL, hex.EncodeToString(sum[:])))
	e := nixtest.NewEnv(t)
	e.Run(t, "", "nix", "flake", "lock", flakeDir)

	dataA := t.TempDir()
	a := startLarderEnv(t, []string{"SSL_CERT_FILE=" + originCert}, dataA, "--upstream", "http://127.0.0.1:1",
		"--proxy-listen", freeAddr(t), "--proxy-connect-port", originPort)
	stdout := mustRun(t, "prefetch", "--server", a.URL, "--pin", "src", "--flake", flakeDir+"#default", "--build-deps")
	if !strings.Contains(stdout, "1 source URLs recorded under pin src") || fetches.Load() != 1 {
		t.Fatalf("prefetch through the proxy (%d origin fetches):\n%s", fetches.Load(), stdout)
	}
	mustRun(t, "check", "--data-dir", dataA, "--pin", "src")
	out := filepath.Join(t.TempDir(), "bundle")
	if stdout := mustRun(t, "export", "--data-dir", dataA, "--pin", "src", out); !strings.Contains(stdout, "1 kept sources") {
		t.Fatalf("export:\n%s", stdout)
	}
	origin.Close()

	dataB := t.TempDir()
	if stdout := mustRun(t, "import", "--data-dir", dataB, "--trusted-key", a.pubkey(t), out); !strings.Contains(stdout, "1 kept sources, 0 refused") {
		t.Fatalf("import:\n%s", stdout)
	}
	mustRun(t, "check", "--data-dir", dataB, "--pin", "src")
	proxyB := freeAddr(t)
	startLarder(t, dataB, "--offline", "--proxy-listen", proxyB, "--proxy-connect-port", originPort)
	ca := x509.NewCertPool()
	ca.AppendCertsFromPEM([]byte(mustRun(t, "ca", "--data-dir", dataB)))
	pu, _ := url.Parse("http://" + proxyB)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: ca}}}
	resp, err := client.Get(srcURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != source {
		t.Fatalf("air-gapped proxy: %d %q", resp.StatusCode, body)
	}
}

// tlsOrigin is an HTTPS origin serving body with a certificate the test
// made; it returns the server, that certificate as a PEM file in dir (for
// Larder's SSL_CERT_FILE), its port, and a count of its requests.
func tlsOrigin(t testing.TB, dir, body string) (*httptest.Server, string, string, *atomic.Int64) {
	fetches := new(atomic.Int64)
	origin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		io.WriteString(w, body)
	}))
	certFile := filepath.Join(dir, "origin.pem")
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: origin.Certificate().Raw})))
	_, port, _ := net.SplitHostPort(origin.Listener.Addr().String())
	return origin, certFile, port, fetches
}
