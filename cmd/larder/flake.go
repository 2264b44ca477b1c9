package main

import (
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

// target is the Larder a prefetch runs in: a server over HTTP, or the
// in-process prefetch.Service.
type target interface {
	prefetch.Target
	Prefetch(ctx context.Context, req *prefetch.Request, progress func(prefetch.Progress)) (*prefetch.Report, error)
	PinURLs(ctx context.Context, pin string, urls []string) error
}

// remote is a Larder server's /api.
type remote struct{ base string }

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

// planFlakes evaluates each installable and returns the roots to mirror and
// the source URLs fixed-output derivations fetched, printing what was added
// locally and what clients will build.
func planFlakes(ctx context.Context, t target, nix prefetch.LocalNix, installables []string, opts prefetch.PlanOptions) ([]string, []string, error) {
	var roots, urls []string
	for _, inst := range installables {
		plan, err := prefetch.PlanInstallable(ctx, nix, t, inst, opts)
		if err != nil {
			return nil, nil, err
		}
		urls = append(urls, plan.URLs...)
		fmt.Printf("%s: %d paths to mirror, %d added from the local store\n", inst, len(plan.Roots), len(plan.Added))
		for _, p := range plan.WillBuild {
			fmt.Printf("  will be built; inputs present: %s\n", p)
		}
		roots = append(roots, plan.Roots...)
	}
	return roots, urls, nil
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
