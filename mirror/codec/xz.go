package codec

// liblzma through cgo: the pure-Go xz decoder manages a fraction of the
// ≥100 MB/s of NAR per core that verifying a fast WAN download needs.

/*
#cgo LDFLAGS: -llzma
#include <lzma.h>
#include <stdlib.h>

static lzma_stream *larder_xz_new(void) {
	lzma_stream *s = calloc(1, sizeof(lzma_stream));
	if (s == NULL) return NULL;
	lzma_stream init = LZMA_STREAM_INIT;
	*s = init;
	if (lzma_stream_decoder(s, UINT64_MAX, LZMA_CONCATENATED) != LZMA_OK) {
		free(s);
		return NULL;
	}
	return s;
}

static lzma_ret larder_xz_code(lzma_stream *s, uint8_t *in, size_t in_len, uint8_t *out, size_t out_len,
                               int finish, size_t *in_used, size_t *out_used) {
	s->next_in = in; s->avail_in = in_len;
	s->next_out = out; s->avail_out = out_len;
	lzma_ret r = lzma_code(s, finish ? LZMA_FINISH : LZMA_RUN);
	*in_used = in_len - s->avail_in;
	*out_used = out_len - s->avail_out;
	return r;
}

static void larder_xz_free(lzma_stream *s) { lzma_end(s); free(s); }
*/
import "C"

import (
	"errors"
	"fmt"
	"io"
	"unsafe"
)

const xzBuf = 64 << 10

// xzReader decodes an xz stream (concatenated streams allowed, as xz(1) does).
// Its buffers live in C memory so that no Go pointer is handed to liblzma.
type xzReader struct {
	src     io.Reader
	s       *C.lzma_stream
	in      *C.uint8_t
	out     *C.uint8_t
	inStart int
	inEnd   int
	srcEOF  bool
	ended   bool
	err     error
}

func newXZReader(r io.Reader) (io.ReadCloser, error) {
	s := C.larder_xz_new()
	if s == nil {
		return nil, errors.New("xz: cannot initialise liblzma decoder")
	}
	return &xzReader{src: r, s: s, in: (*C.uint8_t)(C.malloc(xzBuf)), out: (*C.uint8_t)(C.malloc(xzBuf))}, nil
}

func (x *xzReader) Read(p []byte) (int, error) {
	if x.err != nil {
		return 0, x.err
	}
	if x.ended {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if len(p) > xzBuf {
		p = p[:xzBuf]
	}
	for {
		if x.inStart == x.inEnd && !x.srcEOF {
			if err := x.fill(); err != nil {
				x.err = err
				return 0, err
			}
		}
		var used, produced C.size_t
		in := (*C.uint8_t)(unsafe.Add(unsafe.Pointer(x.in), x.inStart))
		finish := C.int(0)
		if x.srcEOF {
			finish = 1
		}
		ret := C.larder_xz_code(x.s, in, C.size_t(x.inEnd-x.inStart), x.out, C.size_t(len(p)), finish, &used, &produced)
		x.inStart += int(used)
		n := copy(p, unsafe.Slice((*byte)(unsafe.Pointer(x.out)), int(produced)))
		switch ret {
		case C.LZMA_OK:
		case C.LZMA_STREAM_END:
			x.ended = true
			if n > 0 {
				return n, nil
			}
			return 0, io.EOF
		case C.LZMA_BUF_ERROR:
			if x.srcEOF {
				x.err = fmt.Errorf("xz: %w", io.ErrUnexpectedEOF)
				return n, x.err
			}
		default:
			x.err = fmt.Errorf("xz: corrupt input (liblzma error %d)", int(ret))
			return n, x.err
		}
		if n > 0 {
			return n, nil
		}
		if x.srcEOF && x.inStart == x.inEnd && used == 0 && produced == 0 {
			x.err = fmt.Errorf("xz: %w", io.ErrUnexpectedEOF)
			return 0, x.err
		}
	}
}

func (x *xzReader) fill() error {
	buf := unsafe.Slice((*byte)(unsafe.Pointer(x.in)), xzBuf)
	n, err := x.src.Read(buf)
	x.inStart, x.inEnd = 0, n
	if err == io.EOF {
		x.srcEOF = true
		return nil
	}
	return err
}

func (x *xzReader) Close() error {
	if x.s != nil {
		C.larder_xz_free(x.s)
		C.free(unsafe.Pointer(x.in))
		C.free(unsafe.Pointer(x.out))
		x.s, x.in, x.out = nil, nil, nil
	}
	if x.err == nil {
		x.err = errors.New("xz: reader closed")
	}
	return nil
}
