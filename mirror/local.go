package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/nixlarder/larder/mirror/nixfmt"
)

// ErrRejected marks an artifact Larder refuses to store, with the reason.
var ErrRejected = errors.New("rejected")

// SourceLocal is the index source of artifacts added from a local store.
const SourceLocal = "local"

// AddCA stores a content-addressed path from a local store (a flake input,
// a fixed-output source). No key is needed to trust it: the bytes must hash
// to the CA field, and the CA field must give the store path, so nothing
// unverified ever gets Larder's signature. The NAR is kept uncompressed.
func (m *Mirror) AddCA(ctx context.Context, ni *nixfmt.NarInfo, nar io.Reader) error {
	if err := ni.VerifyCA(); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrRejected, ni.StorePath, err)
	}
	if err := m.referencesPresent(ctx, ni); err != nil {
		return err
	}
	stored := *ni
	stored.Compression, stored.URL = "none", narURL(ni.NarHash, "none")
	stored.FileHash, stored.FileSize = ni.NarHash, ni.NarSize
	return m.ingest(ctx, &stored, nar, SourceLocal, func(f *os.File) error {
		if err := checkCAContent(ni, f); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrRejected, ni.StorePath, err)
		}
		return nil
	})
}

// referencesPresent refuses a path whose references Larder cannot serve.
func (m *Mirror) referencesPresent(ctx context.Context, ni *nixfmt.NarInfo) error {
	self := nixfmt.BaseName(ni.StorePath)
	for _, r := range ni.References {
		if r == self {
			continue
		}
		if _, err := m.cfg.Index.NarInfo(ctx, r[:32]); err != nil {
			return fmt.Errorf("%w: %s: reference %s is not in Larder; add it first", ErrRejected, ni.StorePath, r)
		}
	}
	return nil
}

// checkCAContent checks the NAR against the CA hash itself: the NAR hash for
// recursive ingestion, the single file's contents for flat and text.
func checkCAContent(ni *nixfmt.NarInfo, f *os.File) error {
	method, rest, _ := strings.Cut(ni.CA, ":")
	recursive := strings.HasPrefix(rest, "r:")
	algoDigest := strings.TrimPrefix(rest, "r:")
	want, err := nixfmt.ParseHash(algoDigest)
	if err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	var got nixfmt.Hash
	if method == "fixed" && recursive {
		h, err := nixfmt.NewHasher(want.Algo)
		if err != nil {
			return err
		}
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		got = nixfmt.Hash{Algo: want.Algo, Digest: h.Sum(nil)}
	} else if got, err = nixfmt.HashFlatNAR(f, want.Algo); err != nil {
		return err
	}
	if !got.Equal(want) {
		return fmt.Errorf("contents hash to %s, CA says %s", got, want)
	}
	return nil
}
