package main

import (
	"strings"
	"testing"
	"time"

	"github.com/nixlarder/larder/prefetch"
)

func TestProgressLine(t *testing.T) {
	line := progressLine(prefetch.Progress{PathsTotal: 10, PathsDone: 5, BytesTotal: 4 << 20, BytesDone: 1 << 20, Elapsed: time.Second})
	for _, want := range []string{"[######..................]", "5/10 paths", "1.0 MiB/4.0 MiB", "1.0 MiB/s", "ETA 3s"} {
		if !strings.Contains(line, want) {
			t.Errorf("progress line %q lacks %q", line, want)
		}
	}
	if line := progressLine(prefetch.Progress{}); !strings.Contains(line, "ETA ?") {
		t.Errorf("no ETA before anything moved: %q", line)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1500": 1500, "10K": 10 << 10, "2.5M": 5 << 19, "1G": 1 << 30, "2M/s": 2 << 20} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "lots", "-1M"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
}
