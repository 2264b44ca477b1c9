package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/nixlarder/larder/mirror"
	"github.com/nixlarder/larder/mirror/nixfmt"
	"github.com/nixlarder/larder/prefetch"
	"github.com/nixlarder/larder/serve"
)

// remote is a running Larder server's HTTP API, as the CLI uses it: the
// binary cache protocol for reading, /api for the rest.
type remote struct{ base string }

// NarInfo fetches a narinfo from a server; 404 is mirror.ErrNotFound.
func (r remote) NarInfo(ctx context.Context, hash string) ([]byte, error) {
	return r.get(ctx, "/"+hash+".narinfo")
}

func (r remote) OpenNAR(ctx context.Context, url string) (io.ReadCloser, error) {
	resp, err := r.getResp(ctx, "/"+url)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

func (r remote) get(ctx context.Context, path string) ([]byte, error) {
	resp, err := r.getResp(ctx, path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, 64<<20))
}

func (r remote) getResp(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url(path), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("larder server %s: %w", r.base, err)
	}
	if resp.StatusCode == http.StatusNotFound {
		resp.Body.Close()
		return nil, mirror.ErrNotFound
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("larder server: GET %s: %s", path, resp.Status)
	}
	return resp, nil
}

func (r remote) pins(ctx context.Context) ([]prefetch.PinStatus, error) {
	body, err := r.get(ctx, "/api/pins")
	if err != nil {
		return nil, err
	}
	var pins []prefetch.PinStatus
	return pins, json.Unmarshal(body, &pins)
}

func (r remote) Import(ctx context.Context, ni *nixfmt.NarInfo, file io.Reader) error {
	hdr := http.Header{serve.NarInfoHeader: {base64.StdEncoding.EncodeToString(ni.Bytes())}}
	resp, err := r.do(ctx, http.MethodPut, "/api/import/"+ni.HashPart(), file, hdr)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

func (r remote) SetPin(ctx context.Context, name string, roots []string) error {
	body, _ := json.Marshal(roots)
	resp, err := r.do(ctx, http.MethodPut, "/api/pins/"+name, strings.NewReader(string(body)), nil)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

func (r remote) url(p string) string { return strings.TrimSuffix(r.base, "/") + p }

func (r remote) Missing(ctx context.Context, paths []string) ([]string, error) {
	body, _ := json.Marshal(serve.MissingRequest{Paths: paths})
	resp, err := r.do(ctx, http.MethodPost, "/api/missing", bytes.NewReader(body), nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out serve.MissingResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("larder server: /api/missing: %w", err)
	}
	return out.Missing, nil
}

func (r remote) AddCA(ctx context.Context, ni *nixfmt.NarInfo, nar io.Reader) error {
	hdr := http.Header{serve.NarInfoHeader: {base64.StdEncoding.EncodeToString(ni.Bytes())}}
	resp, err := r.do(ctx, http.MethodPut, "/api/ca/"+ni.HashPart(), nar, hdr)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// do sends a request and turns a non-2xx answer into an error with its body.
func (r remote) do(ctx context.Context, method, path string, body io.Reader, hdr http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, r.url(path), body)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil && ctx.Err() != nil {
		return nil, errInterrupted
	}
	if err != nil {
		return nil, fmt.Errorf("larder server %s: %w (start `larder serve`, or run in-process with --data-dir)", r.base, err)
	}
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		return nil, fmt.Errorf("larder server: %s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(msg)))
	}
	return resp, nil
}

// proxiedNix points the local Nix's fixed-output fetches at the server's
// forward proxy, if it runs one, so their sources are kept too. The
// environment reaches the builds of a single-user Nix; a nix-daemon needs it
// in its own environment (see docs/proxy.md).
func (r remote) proxiedNix(ctx context.Context) (prefetch.LocalNix, func(), error) {
	body, err := r.get(ctx, "/api/proxy")
	if errors.Is(err, mirror.ErrNotFound) {
		return prefetch.LocalNix{}, func() {}, nil
	}
	if err != nil {
		return prefetch.LocalNix{}, nil, err
	}
	var info serve.ProxyInfo
	if err := json.Unmarshal(body, &info); err != nil {
		return prefetch.LocalNix{}, nil, err
	}
	u, err := url.Parse(r.base)
	if err != nil {
		return prefetch.LocalNix{}, nil, err
	}
	f, err := os.CreateTemp("", "larder-proxy-ca-*.pem")
	if err != nil {
		return prefetch.LocalNix{}, nil, err
	}
	f.WriteString(info.CAPEM)
	f.Close()
	proxy := "http://" + net.JoinHostPort(u.Hostname(), info.Port)
	return prefetch.LocalNix{Env: []string{"http_proxy=" + proxy, "https_proxy=" + proxy, "NIX_SSL_CERT_FILE=" + f.Name()}},
		func() { os.Remove(f.Name()) }, nil
}

// PinURLs records source URLs under a pin on the server.
func (r remote) PinURLs(ctx context.Context, pin string, urls []string) error {
	body, _ := json.Marshal(urls)
	resp, err := r.do(ctx, http.MethodPut, "/api/pins/"+pin+"/urls", bytes.NewReader(body), nil)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// Prefetch asks the server to do the work and follows its progress stream.
// Ctrl-C closes the connection, which stops the prefetch there.
func (r remote) Prefetch(ctx context.Context, req *prefetch.Request, progress func(prefetch.Progress)) (*prefetch.Report, error) {
	body, _ := json.Marshal(req)
	resp, err := r.do(ctx, http.MethodPost, "/api/prefetch", bytes.NewReader(body), http.Header{"Content-Type": {"application/json"}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var ev serve.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("larder server sent %q: %w", sc.Text(), err)
		}
		switch {
		case ev.Report != nil:
			return ev.Report, nil
		case ev.Progress != nil:
			progress(*ev.Progress)
		case ev.Error != "":
			return nil, errors.New(ev.Error)
		}
	}
	if ctx.Err() != nil {
		return nil, errInterrupted
	}
	return nil, fmt.Errorf("larder server ended the prefetch without a report: %v", sc.Err())
}
