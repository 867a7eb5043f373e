package tail

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// errTruncated reports that the current file changed under the offset.
var errTruncated = errors.New("file truncated")

// read reads once from the current file at the offset and delivers the
// complete lines. It returns the number of bytes read (0 at EOF). A read
// is only used when the bytes before the offset are still those read
// before (checked after the read): otherwise the file was truncated, and
// the data comes from the copy instead.
func (t *Tailer) read() (int, error) {
	n, err := t.readAt(t.cur, t.off, true)
	if errors.Is(err, errTruncated) {
		return 1, t.truncated(-1)
	}
	t.off += int64(n)
	if n > 0 {
		t.atEOF = false
	}
	return n, err
}

func (t *Tailer) readAt(f *os.File, off int64, verify bool) (int, error) {
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
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("tail %s: %w", t.path, err)
	}
	if n == 0 {
		return 0, nil
	}
	if verify && !t.sigMatches(f) {
		return 0, errTruncated
	}
	t.bytes.Add(int64(n))
	t.updateSig(t.buf[t.fill : t.fill+n])
	return n, t.process(n)
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
// the offset, or whose bytes before the offset changed (truncated, then
// written up to or past the offset again), was truncated (copytruncate).
// Truncation followed by new data past the offset is also caught by read.
func (t *Tailer) checkTruncate() error {
	fi, err := t.cur.Stat()
	if err != nil {
		return fmt.Errorf("tail %s: %w", t.path, err)
	}
	if fi.Size() >= t.off && t.sigMatches(t.cur) {
		return nil
	}
	return t.truncated(fi.Size())
}

// truncated takes the lines not read yet from the copy, if there is one,
// and starts again at the beginning of the file.
func (t *Tailer) truncated(size int64) error {
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
			n, err := t.readAt(f, off, false)
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

// sigMatches reports whether f holds, just before the offset, the bytes
// read last (trivially true at the start of a file).
func (t *Tailer) sigMatches(f *os.File) bool {
	if t.sigLen == 0 {
		return t.off == 0
	}
	var b [64]byte
	m, _ := f.ReadAt(b[:t.sigLen], t.off-int64(t.sigLen))
	return m == t.sigLen && bytes.Equal(b[:m], t.sig[:t.sigLen])
}

// checkRotate runs at EOF: it notices a new file at path, and switches to
// it once the writer has moved there (it, or a file after it, has data),
// after reading the old file to its end. Files rotated again before the
// switch queue up in order. It reports whether there may be more to do
// right away.
func (t *Tailer) checkRotate() (bool, error) {
	fi, err := os.Stat(t.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		t.away = true // renamed away, nothing new yet: keep the old fd
	case err != nil:
		return false, fmt.Errorf("tail %s: %w", t.path, err)
	case idOf(fi) == t.curID:
		t.away = false
		return fi.Size() != t.off, nil
	default:
		t.away = true
		if err := t.queue(idOf(fi)); err != nil {
			return false, err
		}
	}
	for i, p := range t.pending {
		pfi, err := p.f.Stat()
		if err != nil {
			return false, fmt.Errorf("tail %s: %w", t.path, err)
		}
		if pfi.Size() > 0 || i > 0 {
			return true, t.switchFile()
		}
	}
	return false, nil
}

// queue opens the file now at path, unless it is already queued.
func (t *Tailer) queue(id fileID) error {
	for _, p := range t.pending {
		if p.id == id {
			return nil
		}
	}
	if len(t.pending) >= 16 {
		// Rotated over and over with nothing written: forget the
		// newest empty file rather than grow without bound.
		last := t.pending[len(t.pending)-1]
		last.f.Close()
		t.pending = t.pending[:len(t.pending)-1]
	}
	f, fi, err := t.openPath()
	if f == nil {
		return err
	}
	t.pending = append(t.pending, opened{f, idOf(fi)})
	t.log.Debug("file rotated, draining the old one", "path", t.path)
	return nil
}

// switchFile reads the current file to its end and moves on to the first
// queued file.
func (t *Tailer) switchFile() error {
	for {
		n, err := t.read()
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
	}
	if t.opts.RotateGrace > 0 {
		// A partial last line may still be completed by a late writer.
		o := &oldFile{f: t.cur, off: t.off, until: time.Now().Add(t.opts.RotateGrace)}
		if !t.skip {
			o.partial = append([]byte(nil), t.buf[:t.fill]...)
		}
		t.fill, t.skip = 0, false
		t.old = append(t.old, o)
	} else {
		if err := t.flushPartial(); err != nil {
			return err
		}
		t.cur.Close()
	}
	t.cur, t.curID = t.pending[0].f, t.pending[0].id
	t.pending = t.pending[1:]
	t.off, t.sigLen, t.atEOF = 0, 0, false
	t.rotations.Add(1)
	t.log.Debug("switched to the new file", "path", t.path)
	return nil
}

// oldFile is a renamed file still read for a while after the switch.
type oldFile struct {
	f       *os.File
	off     int64
	partial []byte
	until   time.Time
}

// readOld reads what was appended to the renamed files since the switch,
// delivers their complete lines, and closes those whose grace is over
// (delivering a last line without newline). It returns the bytes read.
func (t *Tailer) readOld() (int, error) {
	total := 0
	now := time.Now()
	keep := t.old[:0]
	for _, o := range t.old {
		n, err := t.readOldFile(o)
		total += n
		if err != nil {
			return total, err
		}
		if n == 0 && now.After(o.until) {
			if len(o.partial) > 0 {
				t.batch = append(t.batch[:0], o.partial)
				if err := t.deliver(); err != nil {
					return total, err
				}
			}
			o.f.Close()
			continue
		}
		keep = append(keep, o)
	}
	clear(t.old[len(keep):])
	t.old = keep
	return total, nil
}

func (t *Tailer) readOldFile(o *oldFile) (int, error) {
	var chunk [32 << 10]byte
	n, err := o.f.ReadAt(chunk[:], o.off)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("tail %s (rotated): %w", t.path, err)
	}
	if n == 0 {
		return 0, nil
	}
	o.off += int64(n)
	t.bytes.Add(int64(n))
	data := append(o.partial, chunk[:n]...)
	t.batch = t.batch[:0]
	start := 0
	for {
		i := bytes.IndexByte(data[start:], '\n')
		if i < 0 {
			break
		}
		t.batch = append(t.batch, data[start:start+i])
		start += i + 1
	}
	err = t.deliver()
	o.partial = append(data[:0], data[start:]...)
	if len(o.partial) > t.opts.MaxLineSize {
		o.partial = o.partial[:0]
		t.longLines.Add(1)
	}
	return n, err
}
