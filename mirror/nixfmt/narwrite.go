package nixfmt

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// DumpPath writes the NAR serialisation of a file system tree, as
// `nix-store --dump` does: entries sorted bytewise, regular files with their
// executable bit, symlinks with their target. A tree that changes while it
// is read gives a NAR that will not match its NarHash; callers check.
func DumpPath(w io.Writer, path string) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	nw := &narWriter{w: bw}
	nw.str("nix-archive-1")
	if err := nw.node(path); err != nil {
		return err
	}
	if nw.err != nil {
		return nw.err
	}
	return bw.Flush()
}

type narWriter struct {
	w   *bufio.Writer
	err error
	pad [8]byte
}

func (n *narWriter) str(s string) {
	if n.err != nil {
		return
	}
	var l [8]byte
	binary.LittleEndian.PutUint64(l[:], uint64(len(s)))
	n.w.Write(l[:])
	n.w.WriteString(s)
	_, n.err = n.w.Write(n.pad[:(8-len(s)%8)%8])
}

func (n *narWriter) node(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	n.str("(")
	switch mode := fi.Mode(); {
	case mode.IsRegular():
		if err := n.regular(path, fi); err != nil {
			return err
		}
	case mode&os.ModeSymlink != 0:
		target, err := os.Readlink(path)
		if err != nil {
			return err
		}
		n.str("type")
		n.str("symlink")
		n.str("target")
		n.str(target)
	case mode.IsDir():
		if err := n.directory(path); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%s: file type %v cannot be in a NAR", path, mode.Type())
	}
	n.str(")")
	return n.err
}

func (n *narWriter) regular(path string, fi os.FileInfo) error {
	n.str("type")
	n.str("regular")
	if fi.Mode()&0o111 != 0 {
		n.str("executable")
		n.str("")
	}
	n.str("contents")
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	size := fi.Size()
	var l [8]byte
	binary.LittleEndian.PutUint64(l[:], uint64(size))
	n.w.Write(l[:])
	copied, err := io.Copy(n.w, io.LimitReader(f, size))
	if err != nil {
		return err
	}
	if copied != size {
		return fmt.Errorf("%s: changed size while being read", path)
	}
	_, n.err = n.w.Write(n.pad[:(8-size%8)%8])
	return n.err
}

func (n *narWriter) directory(path string) error {
	n.str("type")
	n.str("directory")
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		n.str("entry")
		n.str("(")
		n.str("name")
		n.str(name)
		n.str("node")
		if err := n.node(filepath.Join(path, name)); err != nil {
			return err
		}
		n.str(")")
	}
	return n.err
}
