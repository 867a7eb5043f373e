package tail

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// read reads once from f at the current offset and delivers the complete
// lines. It returns the number of bytes read (0 at EOF).
func (t *Tailer) read(f *os.File) (int, error) {
	n, err := t.readAt(f, t.off)
	t.off += int64(n)
	if n > 0 {
		t.atEOF = false
	}
	return n, err
}

func (t *Tailer) readAt(f *os.File, off int64) (int, error) {
	if t.fill == len(t.buf) {
		if len(t.buf) < t.opts.MaxLineSize {
			nb := make([]byte, min(2*len(t.buf), t.opts.MaxLineSize))
			copy(nb, t.buf[:t.fill])
			t.buf = nb
		} else {
			t.fill, t.skip = 0, true
			t.longLines.Add(1)
		}
	}
	n, err := f.ReadAt(t.buf[t.fill:], off)
	if n > 0 {
		t.bytes.Add(int64(n))
		t.updateSig(t.buf[t.fill : t.fill+n])
		if perr := t.process(n); perr != nil {
			return n, perr
		}
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return n, fmt.Errorf("tail %s: %w", t.path, err)
	}
	return n, nil
}

func (t *Tailer) updateSig(chunk []byte) {
	if len(chunk) >= len(t.sig) {
		t.sigLen = copy(t.sig[:], chunk[len(chunk)-len(t.sig):])
		return
	}
	keep := min(t.sigLen, len(t.sig)-len(chunk))
	copy(t.sig[:], t.sig[t.sigLen-keep:t.sigLen])
	t.sigLen = keep + copy(t.sig[keep:], chunk)
}

// process splits buf[:fill+n] into lines, hands the complete ones to the
// callback and keeps the partial last line at the start of buf.
func (t *Tailer) process(n int) error {
	data := t.buf[:t.fill+n]
	start, pos := 0, t.fill
	if t.skip {
		i := bytes.IndexByte(data[pos:], '\n')
		if i < 0 {
			t.fill = 0
			return nil
		}
		start, pos, t.skip = pos+i+1, pos+i+1, false
	}
	t.batch = t.batch[:0]
	for {
		i := bytes.IndexByte(data[pos:], '\n')
		if i < 0 {
			break
		}
		t.batch = append(t.batch, data[start:pos+i])
		start, pos = pos+i+1, pos+i+1
	}
	err := t.deliver()
	t.fill = copy(t.buf, data[start:])
	return err
}

func (t *Tailer) deliver() error {
	if len(t.batch) == 0 {
		return nil
	}
	t.lines.Add(int64(len(t.batch)))
	err := t.emit(t.batch)
	t.batch = t.batch[:0]
	return err
}

// flushPartial delivers a last line that has no newline (end of a rotated
// file).
func (t *Tailer) flushPartial() error {
	if t.fill == 0 || t.skip {
		t.fill, t.skip = 0, false
		return nil
	}
	t.batch = append(t.batch[:0], t.buf[:t.fill])
	t.fill = 0
	return t.deliver()
}

// checkTruncate runs before reading on after an EOF: a file shorter than
// the offset, or whose bytes before the offset changed, was truncated
// (copytruncate) and possibly written again.
func (t *Tailer) checkTruncate() error {
	fi, err := t.cur.Stat()
	if err != nil {
		return fmt.Errorf("tail %s: %w", t.path, err)
	}
	size := fi.Size()
	switch {
	case size < t.off:
	case size == t.off || t.sigLen == 0:
		return nil
	default:
		var cur [64]byte
		m, _ := t.cur.ReadAt(cur[:t.sigLen], t.off-int64(t.sigLen))
		if m == t.sigLen && bytes.Equal(cur[:m], t.sig[:t.sigLen]) {
			return nil
		}
	}
	t.truncations.Add(1)
	t.log.Debug("file truncated", "path", t.path, "offset", t.off, "size", size)
	if err := t.catchUp(); err != nil {
		return err
	}
	if t.fill > 0 {
		t.lost.Add(1)
	}
	t.fill, t.skip, t.off, t.sigLen, t.atEOF = 0, false, 0, 0, false
	return nil
}

// catchUp reads the lines between the offset and the end of the copy that
// copytruncate made, when a copy whose bytes before the offset match ours
// exists.
func (t *Tailer) catchUp() error {
	if t.off == 0 {
		return nil
	}
	for _, name := range t.opts.CopyNames(t.path) {
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		fi, err := f.Stat()
		if err != nil || idOf(fi) == t.curID || fi.Size() < t.off || !t.sigMatches(f) {
			f.Close()
			continue
		}
		before := t.lines.Load()
		off := t.off
		for {
			n, err := t.readAt(f, off)
			off += int64(n)
			if err != nil {
				f.Close()
				return err
			}
			if n == 0 {
				break
			}
		}
		f.Close()
		t.caughtUp.Add(t.lines.Load() - before)
		t.log.Debug("caught up from copy", "copy", name, "lines", t.lines.Load()-before)
		return nil
	}
	return nil
}

func (t *Tailer) sigMatches(f *os.File) bool {
	if t.sigLen == 0 {
		return false
	}
	var b [64]byte
	m, _ := f.ReadAt(b[:t.sigLen], t.off-int64(t.sigLen))
	return m == t.sigLen && bytes.Equal(b[:m], t.sig[:t.sigLen])
}

// checkRotate runs at EOF: it notices a new file at path, and switches to
// it once the writer has moved there (it has data), after reading the old
// file to its end. It reports whether there may be more to do right away.
func (t *Tailer) checkRotate() (bool, error) {
	fi, err := os.Stat(t.path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil // renamed away, nothing new yet: keep the old fd
	}
	if err != nil {
		return false, fmt.Errorf("tail %s: %w", t.path, err)
	}
	id := idOf(fi)
	if id == t.curID {
		return fi.Size() != t.off, nil
	}
	if t.next == nil || t.nextID != id {
		if t.next != nil {
			t.next.Close()
			t.next = nil
		}
		f, err := os.Open(t.path)
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("tail %s: %w", t.path, err)
		}
		nfi, err := f.Stat()
		if err != nil {
			f.Close()
			return false, fmt.Errorf("tail %s: %w", t.path, err)
		}
		t.next, t.nextID = f, idOf(nfi)
		t.log.Debug("file rotated, draining the old one", "path", t.path)
	}
	nfi, err := t.next.Stat()
	if err != nil {
		return false, fmt.Errorf("tail %s: %w", t.path, err)
	}
	if nfi.Size() == 0 {
		return false, nil // writer still on the old file
	}
	return true, t.switchFile()
}

func (t *Tailer) switchFile() error {
	for {
		n, err := t.read(t.cur)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
	}
	if err := t.flushPartial(); err != nil {
		return err
	}
	t.cur.Close()
	t.cur, t.curID, t.next = t.next, t.nextID, nil
	t.off, t.sigLen, t.atEOF = 0, 0, false
	t.rotations.Add(1)
	t.log.Debug("switched to the new file", "path", t.path)
	return nil
}
