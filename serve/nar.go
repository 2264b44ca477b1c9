package serve

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/nixlarder/larder/mirror"
	"github.com/nixlarder/larder/mirror/codec"
	"github.com/nixlarder/larder/mirror/nixfmt"
)

// nar serves a NAR file: committed files through http.ServeContent (Range,
// HEAD, sendfile); a download in progress as it arrives, cut off if it fails
// verification so that no client ever gets a clean 200 of bad bytes.
func (s *Server) nar(w http.ResponseWriter, r *http.Request, hash32, ext string) error {
	compression, ok := codec.FromExtension(ext)
	if !ok {
		return fmt.Errorf("%w: unknown NAR extension %q", errBadRequest, ext)
	}
	digest, err := nixfmt.DecodeNix32(hash32)
	if err != nil {
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	narHash := nixfmt.Hash{Algo: "sha256", Digest: digest}
	if s.opts.Push != nil && r.Method == http.MethodHead {
		// nix copy --to asks whether the NAR it is about to upload exists.
		if size, ok := s.opts.Push.Staged("nar/" + hash32 + ".nar" + ext); ok {
			w.Header().Set("Content-Length", fmt.Sprint(size))
			return nil
		}
	}
	if r.Header.Get("Range") != "" {
		// Ranges are served from the committed file only.
		if err := s.cache.WaitNAR(r.Context(), narHash, compression); err != nil {
			return err
		}
	}
	nar, err := s.cache.OpenNAR(r.Context(), narHash, compression)
	if err != nil {
		return err
	}
	defer nar.Close()
	cw := &countingWriter{ResponseWriter: w}
	defer func() { s.cache.RecordServed(cw.n) }()
	w = cw
	h := w.Header()
	h.Set("Content-Type", "application/x-nix-nar")
	h.Set("Accept-Ranges", "bytes")
	if nar.File != nil {
		http.ServeContent(w, r, "", time.Time{}, nar.File)
		return nil
	}
	if nar.Size >= 0 {
		h.Set("Content-Length", fmt.Sprint(nar.Size))
	}
	if r.Method == http.MethodHead {
		return nil
	}
	return streamNAR(w, nar)
}

// streamNAR copies a growing download to the client, flushing as bytes come.
func streamNAR(w http.ResponseWriter, nar *mirror.NAR) error {
	rc := http.NewResponseController(w)
	buf := make([]byte, 128<<10)
	for {
		n, err := nar.Stream.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil // the client left; the download goes on for others
			}
			rc.Flush()
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			panic(http.ErrAbortHandler) // verification failed or upstream broke: cut the connection
		}
	}
}

// countingWriter counts body bytes for the served-bytes figures.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush through the wrapper.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// ReadFrom keeps sendfile for committed files (http.ServeContent uses it).
func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.ResponseWriter.(io.ReaderFrom); ok {
		n, err := rf.ReadFrom(r)
		c.n += n
		return n, err
	}
	return io.Copy(struct{ io.Writer }{c}, r)
}
