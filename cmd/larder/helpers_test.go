package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// throttledFileServer serves dir with each response body limited to
// bytesPerSec, so a test can catch downloads in the middle.
func throttledFileServer(t testing.TB, dir string, bytesPerSec int) string {
	fs := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.ServeHTTP(&throttled{ResponseWriter: w, rate: bytesPerSec}, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

type throttled struct {
	http.ResponseWriter
	rate int
}

func (t *throttled) Write(p []byte) (int, error) {
	chunk := max(t.rate/20, 1) // 20 writes a second
	written := 0
	for written < len(p) {
		n, err := t.ResponseWriter.Write(p[written:min(written+chunk, len(p))])
		written += n
		if err != nil {
			return written, err
		}
		if f, ok := t.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		time.Sleep(50 * time.Millisecond)
	}
	return written, nil
}
