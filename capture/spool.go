package capture

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/migrate-tool/migrate/internal/hint"
)

// spool holds a snapshot of every captured file body, taken in the same
// read that computes its sha256, so the archive stores exactly the bytes
// its manifest describes however the live files change afterwards. Each
// reader appends to its own file in a private temp directory.
type spool struct {
	dir   string
	lock  *os.File // the directory itself, flocked while the spool is in use
	files [readWorkers]*os.File
	offs  [readWorkers]int64
	mu    sync.Mutex
	loc   map[string]spoolLoc
	pre   *precompressed // segments compressed during the trace, if any
	check *frameChecker  // checks every compressed frame, if set (see Options.CheckFrames)
}

type spoolLoc struct {
	file      int
	off, size int64
	sum       string
	stat      fileStamp // the file as it was when copied
}

// fileStamp identifies a file's content cheaply: if none of these changed,
// a copy taken earlier is still current.
type fileStamp struct {
	ino, size int64
	mtime     time.Time
}

func stampOf(fi os.FileInfo) fileStamp {
	st := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if t := statT(fi); t != nil {
		st.ino = int64(t.Ino)
	}
	return st
}

func newSpool() (*spool, error) {
	sweepSpools()
	dir, err := os.MkdirTemp("", fmt.Sprintf("migrate-capture-%d-", os.Getpid()))
	if err != nil {
		return nil, spoolError(err)
	}
	s := &spool{dir: dir, loc: map[string]spoolLoc{}}
	if s.lock, err = lockDir(dir); err != nil {
		s.close()
		return nil, spoolError(err)
	}
	for i := range s.files {
		if s.files[i], err = os.CreateTemp(dir, "bodies-"); err != nil {
			s.close()
			return nil, spoolError(err)
		}
	}
	return s, nil
}

// lockDir opens dir and takes an exclusive flock on it, held until the
// returned file is closed (or its process dies).
func lockDir(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return f, nil
}

// sweepGrace is how old an unlocked spool must be before it is swept, so
// that one whose creator has not locked it yet is never taken.
var sweepGrace = time.Minute

// sweepSpools removes the spools of capture processes that no longer run
// (killed mid-capture, so their deferred cleanup never ran). A live
// capture holds a flock on its spool; the lock, not the PID in the name,
// decides, because a capture in another PID namespace sharing this /tmp
// (containers, the test bed's hosts) has a PID that is meaningless here.
func sweepSpools() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "migrate-capture-*"))
	for _, d := range dirs {
		fi, err := os.Lstat(d)
		if err != nil || !fi.IsDir() || time.Since(fi.ModTime()) < sweepGrace {
			continue
		}
		f, err := lockDir(d)
		if err != nil {
			continue // in use (or not ours to open)
		}
		os.RemoveAll(d)
		f.Close()
	}
}

func spoolError(err error) error {
	return hint.With(fmt.Errorf("capture spool: %w", err),
		"the source host needs free space in $TMPDIR (default /tmp) for the captured files")
}

func (s *spool) close() {
	if s.pre != nil {
		s.pre.close()
	}
	s.check.close()
	for _, f := range s.files {
		if f != nil {
			f.Close()
		}
	}
	os.RemoveAll(s.dir)
	if s.lock != nil {
		s.lock.Close()
	}
}

// take copies e's file into spool file w while hashing it, and sets e's
// Size and SHA256 from the bytes copied. A file whose size or mtime
// changed during the read is read again, at most 3 times; the last read is
// then kept and reported in the returned note (flagged, never silent).
func (s *spool) take(w int, e *Entry) (note string, err error) {
	sf := s.files[w]
	for attempt := 1; ; attempt++ {
		off := s.offs[w]
		n, sum, stamp, stable, err := copyStable(sf, e.Path)
		if err != nil {
			sf.Truncate(off)
			sf.Seek(off, io.SeekStart)
			return "", err
		}
		if stable || attempt == 3 {
			s.offs[w] = off + n
			s.mu.Lock()
			s.loc[e.Path] = spoolLoc{file: w, off: off, size: n, sum: sum, stat: stamp}
			s.mu.Unlock()
			e.Size, e.SHA256 = n, sum
			if !stable {
				note = fmt.Sprintf("changed while being read %d times, stored as last read (%d bytes): %s", attempt, n, e.Path)
			}
			return note, nil
		}
		if err := sf.Truncate(off); err != nil {
			return "", spoolError(err)
		}
		if _, err := sf.Seek(off, io.SeekStart); err != nil {
			return "", spoolError(err)
		}
	}
}

// copyBufs are copyLarge's buffers.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// copyLarge is io.Copy in 256 KiB pieces, not 32 KiB: an eighth of the
// system calls (spooling files), or of the agent stream's frames (copying
// compressed segments into the archive).
func copyLarge(dst io.Writer, src io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	// Hiding src's WriteTo (an *os.File has one) makes CopyBuffer use the buffer.
	return io.CopyBuffer(dst, struct{ io.Reader }{src}, *bp)
}

// copyStable appends the file at path to dst and reports whether it
// stayed unchanged (size, mtime) during the read.
func copyStable(dst io.Writer, path string) (n int64, sum string, stamp fileStamp, stable bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", stamp, false, err
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return 0, "", stamp, false, err
	}
	h := sha256.New()
	n, err = copyLarge(io.MultiWriter(dst, h), f)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) && pe.Path != path {
			return 0, "", stamp, false, spoolError(err) // the spool write failed
		}
		return 0, "", stamp, false, err
	}
	after, err := f.Stat()
	if err != nil {
		return 0, "", stamp, false, err
	}
	stamp = stampOf(after)
	stable = stampOf(before) == stamp && n == after.Size()
	return n, hex.EncodeToString(h.Sum(nil)), stamp, stable, nil
}

// reuse fills e from an earlier copy if the file has not changed since.
func (s *spool) reuse(e *Entry) bool {
	l, ok := s.lookup(e.Path)
	if !ok {
		return false
	}
	fi, err := os.Lstat(e.Path)
	if err != nil || !fi.Mode().IsRegular() || stampOf(fi) != l.stat {
		return false
	}
	e.Size, e.SHA256 = l.size, l.sum
	return true
}

// prefetch copies the regular files among paths into the spool in the
// background (while the start-up is traced); snapAll later reuses every
// copy whose file is unchanged. wait blocks until it is done.
func (s *spool) prefetch(ctx context.Context, paths []string) (wait func()) {
	done := s.prefetchEach(ctx, paths)
	return func() {
		for _, ch := range done {
			<-ch
		}
	}
}

// prefetchEach is prefetch with a channel per path, closed once that
// path's copy is made or has failed (or the copying was cancelled).
func (s *spool) prefetchEach(ctx context.Context, paths []string) []<-chan struct{} {
	done := make([]chan struct{}, len(paths))
	out := make([]<-chan struct{}, len(paths))
	for i := range done {
		done[i] = make(chan struct{})
		out[i] = done[i]
	}
	go func() {
		handed := make([]bool, len(paths))
		parallel(ctx, len(paths), func(w, i int) {
			handed[i] = true
			defer close(done[i])
			if fi, err := os.Lstat(paths[i]); err == nil && fi.Mode().IsRegular() {
				s.take(w, &Entry{Path: paths[i], Type: TypeFile}) // errors: retried by snapAll
			}
		}, readWorkers)
		for i, h := range handed {
			if !h {
				close(done[i])
			}
		}
	}()
	return out
}

// lookup returns where path's body is in the spool.
func (s *spool) lookup(path string) (spoolLoc, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.loc[path]
	return l, ok
}

// openLoc returns the spooled body at l.
func (s *spool) openLoc(l spoolLoc) io.ReadCloser {
	return io.NopCloser(io.NewSectionReader(s.files[l.file], l.off, l.size))
}

// open is the Opener that serves bodies from the spool.
func (s *spool) open(e *Entry) (io.ReadCloser, error) {
	l, ok := s.lookup(e.Path)
	if !ok {
		return nil, fmt.Errorf("%s: not in the capture spool", e.Path)
	}
	return s.openLoc(l), nil
}

// snapAll is hashAll with every body copied into the spool.
func (c *collector) snapAll(ctx context.Context, es []Entry) error {
	notes := make([]string, len(es))
	errs, err := eachFile(ctx, es, func(w, i int) (err error) {
		if !c.snap.reuse(&es[i]) {
			notes[i], err = c.snap.take(w, &es[i])
		}
		return err
	})
	if err != nil {
		return err
	}
	for _, n := range notes {
		if n != "" {
			c.note("%s", n)
		}
	}
	return c.readErrors(es, errs)
}
