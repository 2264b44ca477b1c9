package mirror

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nixlarder/larder/index"
	"github.com/nixlarder/larder/mirror/codec"
	"github.com/nixlarder/larder/mirror/nixfmt"
	"github.com/nixlarder/larder/mirror/upstream"
)

// NarInfo returns the narinfo Larder serves for a store path hash part:
// upstream Sig lines kept, Larder's own added, URL pointing at Larder. It
// answers ErrNotFound unless the NAR can be delivered now.
func (m *Mirror) NarInfo(ctx context.Context, hash string) ([]byte, error) {
	if ni, ok := m.localNarInfo(ctx, hash); ok {
		m.stats.NarInfoHits.Add(1)
		return ni.Bytes(), nil
	}
	if body, ok := m.rendered.get(hash); ok {
		m.stats.NarInfoHits.Add(1)
		m.touchNarInfo(hash)
		return body, nil
	}
	gen := m.rendered.gen.Load()
	row, err := m.cfg.Index.NarInfo(ctx, hash)
	switch {
	case err == nil:
	case !errors.Is(err, index.ErrNotFound):
		return nil, err
	case m.cfg.Offline || m.negative.has(hash):
		m.stats.NarInfoMisses.Add(1)
		return nil, ErrNotFound
	default:
		if row, err = m.fetchNarInfo(ctx, hash); err != nil {
			m.stats.NarInfoMisses.Add(1)
			return nil, err
		}
		m.stats.NarInfoUpstream.Add(1)
	}
	ni, err := nixfmt.ParseNarInfo([]byte(row.Text))
	if err != nil {
		return nil, fmt.Errorf("indexed narinfo %s: %w", hash, err)
	}
	file, ok, err := m.deliverable(ctx, row, ni)
	if err != nil {
		return nil, err
	}
	if !ok {
		m.log.Info("narinfo known but its NAR cannot be delivered now", "path", row.StorePath, "source", row.Source)
		m.stats.NarInfoMisses.Add(1)
		return nil, ErrNotFound
	}
	if file == nil && m.cfg.Prepull {
		m.enqueuePrepull(row, ni)
	}
	m.stats.NarInfoHits.Add(1)
	m.touchNarInfo(hash)
	body := m.render(ni, file).Bytes()
	if file != nil {
		m.rendered.put(hash, body, gen)
	}
	return body, nil
}

// deliverable finds the best NAR file on disk, or reports whether the NAR can
// still be fetched (in flight, or its upstream is reachable).
func (m *Mirror) deliverable(ctx context.Context, row *index.NarInfo, ni *nixfmt.NarInfo) (*index.NarFile, bool, error) {
	files, err := m.cfg.Index.NarFiles(ctx, row.NarHash)
	if err != nil {
		return nil, false, err
	}
	for _, f := range m.preferred(files) {
		if m.blobPresent(f) {
			return f, true, nil
		}
	}
	if m.inFlight(blobKey(ni.NarHash, ni.Compression)) {
		return nil, true, nil
	}
	return nil, m.reachable(m.upstreamByURL(row.Source)), nil
}

func (m *Mirror) blobPresent(f *index.NarFile) bool {
	h, err := nixfmt.ParseHash(f.NarHash)
	if err != nil {
		return false
	}
	file, err := m.cfg.Blobs.Open(blobKey(h, f.Compression))
	if err != nil {
		return false
	}
	file.Close()
	return true
}

// render is the narinfo as Larder serves it.
func (m *Mirror) render(ni *nixfmt.NarInfo, file *index.NarFile) *nixfmt.NarInfo {
	out := *ni
	if file != nil {
		out.Compression = file.Compression
		out.FileHash, _ = nixfmt.ParseHash(file.FileHash)
		out.FileSize = uint64(file.FileSize)
	}
	out.URL = narURL(ni.NarHash, out.Compression)
	own := m.cfg.Key.SignNarInfo(&out)
	out.Sigs = nil
	for _, s := range ni.Sigs {
		if keyName(s) != m.cfg.Key.Name {
			out.Sigs = append(out.Sigs, s)
		}
	}
	out.Sigs = append(out.Sigs, own)
	return &out
}

func keyName(sig string) string {
	for i := 0; i < len(sig); i++ {
		if sig[i] == ':' {
			return sig[:i]
		}
	}
	return ""
}

// narURL names a NAR after its NarHash, so one file serves every narinfo
// with the same contents.
func narURL(narHash nixfmt.Hash, compression string) string {
	ext, _ := codec.Extension(compression)
	return "nar/" + nixfmt.EncodeNix32(narHash.Digest) + ".nar" + ext
}

func blobKey(narHash nixfmt.Hash, compression string) string { return narURL(narHash, compression) }

// fetchNarInfo asks the upstreams once per hash however many clients wait,
// detached from any one client so that a disconnect cancels nothing.
func (m *Mirror) fetchNarInfo(ctx context.Context, hash string) (*index.NarInfo, error) {
	ch := m.flights.DoChan(hash, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.NarInfoTimeout)
		defer cancel()
		row, err := m.lookupUpstreams(ctx, hash)
		if err == nil {
			m.warmReferences(row)
		}
		return row, err
	})
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*index.NarInfo), nil
	}
}

type lookupResult struct {
	ni  *nixfmt.NarInfo
	err error
}

// lookupUpstreams queries every reachable upstream at once and takes the
// answer of the first in priority order that has an acceptable narinfo, so a
// miss costs one round trip, not one per upstream.
func (m *Mirror) lookupUpstreams(ctx context.Context, hash string) (*index.NarInfo, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make([]chan lookupResult, len(m.cfg.Upstreams))
	for i, up := range m.cfg.Upstreams {
		results[i] = make(chan lookupResult, 1)
		go func() {
			ni, err := up.NarInfo(ctx, hash)
			if err == nil {
				err = m.accept(up, ni)
			}
			results[i] <- lookupResult{ni, err}
		}()
	}
	definite := true // every upstream said "missing" (cacheable)
	for i, up := range m.cfg.Upstreams {
		res := <-results[i]
		if res.err == nil {
			return m.record(ctx, up, res.ni)
		}
		if !errors.Is(res.err, upstream.ErrNotFound) {
			if upstream.Transient(res.err) || errors.Is(res.err, upstream.ErrUnavailable) {
				definite = false
			}
			m.log.Warn("upstream narinfo not usable", "hash", hash, "upstream", up.URL(), "err", res.err)
		}
	}
	if definite {
		m.negative.add(hash)
	}
	return nil, ErrNotFound
}

// errRejected marks narinfos an upstream served that Larder will not trust.
var errRejected = errors.New("narinfo rejected")

// accept checks that a narinfo is trustworthy and usable: a valid signature
// by a trusted key or a CA field that proves the path, a compression Larder
// can verify, and a NAR URL on the same upstream.
func (m *Mirror) accept(up Upstream, ni *nixfmt.NarInfo) error {
	if !nixfmt.VerifyNarInfo(ni, m.cfg.TrustedKeys) && !nixfmt.VerifyNarInfo(ni, m.cfg.UpstreamKeys[up.URL()]) && ni.VerifyCA() != nil {
		m.stats.SignatureRejects.Add(1)
		return fmt.Errorf("%w: %s has no valid signature by a trusted key and no valid CA", errRejected, ni.StorePath)
	}
	if !codec.Supported(ni.Compression) {
		return fmt.Errorf("%w: %s uses compression %q, which Larder cannot verify", errRejected, ni.StorePath, ni.Compression)
	}
	if _, err := up.Resolve(ni.URL); err != nil {
		return fmt.Errorf("%w: %v", errRejected, err)
	}
	return nil
}

// record stores an accepted narinfo in the index.
func (m *Mirror) record(ctx context.Context, up Upstream, ni *nixfmt.NarInfo) (*index.NarInfo, error) {
	narURL, _ := up.Resolve(ni.URL)
	row := &index.NarInfo{
		Hash: ni.HashPart(), StorePath: ni.StorePath, NarHash: ni.NarHash.String(),
		NarSize: int64(ni.NarSize), References: ni.References, Text: string(ni.Bytes()),
		Source: up.URL(), NarURL: narURL,
	}
	if err := m.cfg.Index.PutNarInfo(ctx, row); err != nil {
		return nil, err
	}
	return row, nil
}

// ParseNarURL reads a NAR URL as Larder serves it, "nar/<nix32 NarHash>.nar<ext>".
func ParseNarURL(u string) (nixfmt.Hash, string, error) {
	name, ok := strings.CutPrefix(u, "nar/")
	if !ok || len(name) < 56 || name[52:56] != ".nar" {
		return nixfmt.Hash{}, "", fmt.Errorf("not a Larder NAR URL: %q", u)
	}
	digest, err := nixfmt.DecodeNix32(name[:52])
	if err != nil {
		return nixfmt.Hash{}, "", fmt.Errorf("NAR URL %q: %w", u, err)
	}
	compression, ok := codec.FromExtension(name[56:])
	if !ok {
		return nixfmt.Hash{}, "", fmt.Errorf("NAR URL %q: unknown extension", u)
	}
	return nixfmt.Hash{Algo: "sha256", Digest: digest}, compression, nil
}
