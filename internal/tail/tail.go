// Package tail follows a growing log file like `tail -F`, without losing a
// line across rotation.
//
// The directory is watched with inotify (fsnotify), with a slow poll as a
// safety net. Rotation by rename+create is followed by reading the renamed
// file through the still-open descriptor until the writer has moved to the
// new file (the new file has data), then the new file from its start.
// Rotation by copytruncate is noticed when the file shrinks below the read
// offset or the bytes before the offset change; the lines the tailer had
// not read yet are then taken from the copy (path.1 by default) before the
// truncated file is read from its start.
package tail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Options tune a Tailer. The zero value follows from the end of the file.
type Options struct {
	// FromStart reads the lines already in the file; otherwise following
	// starts at its end (after the last complete line).
	FromStart bool
	// BufferSize is the read size. Default 256 KiB.
	BufferSize int
	// MaxLineSize bounds a line; longer lines are skipped and counted in
	// Stats.LongLines. Default 1 MiB.
	MaxLineSize int
	// PollInterval is how often the file is checked without an inotify
	// event (a safety net, and the only mechanism where inotify fails).
	// Default 1s.
	PollInterval time.Duration
	// RotateGrace is how long a renamed file is still read after the
	// switch to the new one, for writers that reopen one process at a
	// time (nginx workers after USR1). Its late lines are delivered after
	// lines of the new file. Default 5s; negative: close at the switch.
	RotateGrace time.Duration
	// CopyNames lists where copytruncate puts the copy of path. Default
	// path+".1".
	CopyNames func(path string) []string
	// Logger gets rotation events at debug level. Default: discard.
	Logger *slog.Logger
}

// Stats counts what a Tailer has done. All fields only grow.
type Stats struct {
	Lines       int64 `json:"lines"`       // lines delivered
	Bytes       int64 `json:"bytes"`       // bytes read (including newlines)
	Rotations   int64 `json:"rotations"`   // switches to a new file after rename+create
	Truncations int64 `json:"truncations"` // copytruncate (or other shrink) seen
	CaughtUp    int64 `json:"caught_up"`   // lines taken from a copytruncate copy
	Lost        int64 `json:"lost"`        // partial lines dropped at a truncation without a copy
	LongLines   int64 `json:"long_lines"`  // lines over MaxLineSize, skipped
}

// Tailer follows one file. Create it with New and run it with Run.
type Tailer struct {
	path string
	opts Options
	log  *slog.Logger

	lines, bytes, rotations, truncations, caughtUp, lost, longLines atomic.Int64

	cur     *os.File // file being read; nil until path exists
	curID   fileID
	off     int64      // read offset in cur
	pending []opened   // newer files at path, oldest first, not read yet
	old     []*oldFile // renamed files still read during RotateGrace
	away    bool       // path no longer names cur
	buf     []byte     // pending partial line at buf[:fill]
	fill    int
	skip    bool // discarding up to the next newline (long line, or start mid-line)
	sig     [64]byte
	sigLen  int
	batch   [][]byte
	emit    func([][]byte) error
	atEOF   bool // last read hit EOF: verify sig before the next read
	watched bool
	ready   chan struct{}
}

type fileID struct{ dev, ino uint64 }

type opened struct {
	f  *os.File
	id fileID
}

func idOf(fi os.FileInfo) fileID {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fileID{uint64(st.Dev), st.Ino}
	}
	return fileID{}
}

// New returns a Tailer for path.
func New(path string, opts Options) *Tailer {
	if opts.BufferSize <= 0 {
		opts.BufferSize = 256 << 10
	}
	if opts.MaxLineSize <= 0 {
		opts.MaxLineSize = 1 << 20
	}
	if opts.MaxLineSize < opts.BufferSize {
		opts.MaxLineSize = opts.BufferSize
	}
	if opts.RotateGrace == 0 {
		opts.RotateGrace = 5 * time.Second
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.CopyNames == nil {
		opts.CopyNames = func(p string) []string { return []string{p + ".1"} }
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Tailer{path: path, opts: opts, log: log, buf: make([]byte, opts.BufferSize),
		ready: make(chan struct{})}
}

// Ready is closed once Run has set up its watch and opened the file (or
// found it missing): lines written after that are delivered.
func (t *Tailer) Ready() <-chan struct{} { return t.ready }

// Stats returns the counters so far; safe to call while Run runs.
func (t *Tailer) Stats() Stats {
	return Stats{Lines: t.lines.Load(), Bytes: t.bytes.Load(), Rotations: t.rotations.Load(),
		Truncations: t.truncations.Load(), CaughtUp: t.caughtUp.Load(), Lost: t.lost.Load(),
		LongLines: t.longLines.Load()}
}

// Run follows the file until ctx is done (returning ctx.Err()), fn fails
// (returning its error) or reading fails. fn gets batches of complete lines
// without their newline, oldest first; the slices are only valid during the
// call. The file need not exist yet.
func (t *Tailer) Run(ctx context.Context, fn func(lines [][]byte) error) error {
	t.emit = fn
	defer t.closeAll()
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.log.Debug("inotify unavailable, polling", "err", err)
		w = nil
	} else {
		defer w.Close()
	}
	t.watch(w)
	if err := t.open(true); err != nil {
		return err
	}
	close(t.ready)
	tick := time.NewTicker(t.opts.PollInterval)
	defer tick.Stop()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		t.watch(w)
		progress, err := t.step()
		if err != nil {
			return err
		}
		if progress {
			continue
		}
		if err := t.wait(ctx, w, tick.C); err != nil {
			return err
		}
	}
}

func (t *Tailer) watch(w *fsnotify.Watcher) {
	if w == nil || t.watched {
		return
	}
	if err := w.Add(filepath.Dir(t.path)); err == nil {
		t.watched = true
	}
}

// wait blocks until something may have changed: an inotify event about
// our file (or any write while a rotated file is still being read), the
// poll tick, or cancellation.
func (t *Tailer) wait(ctx context.Context, w *fsnotify.Watcher, tick <-chan time.Time) error {
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w != nil {
		events, errs = w.Events, w.Errors
	}
	base := filepath.Base(t.path)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick:
			return nil
		case ev := <-events:
			if ev.Name == filepath.Dir(t.path) && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				t.watched = false // the directory went away: watch it again when it is back
				return nil
			}
			if filepath.Base(ev.Name) == base || t.away || len(t.old) > 0 || t.cur == nil || ev.Has(fsnotify.Rename) {
				return nil
			}
		case err := <-errs:
			// Overflow and the like: re-check everything now.
			t.log.Debug("inotify error", "err", err)
			return nil
		}
	}
}

func (t *Tailer) closeAll() {
	if t.cur != nil {
		t.cur.Close()
	}
	for _, p := range t.pending {
		p.f.Close()
	}
	for _, o := range t.old {
		o.f.Close()
	}
}

// openPath opens the tailed path; a nil file and error if it does not
// exist (between a rotation's rename and the new file's creation).
func (t *Tailer) openPath() (*os.File, os.FileInfo, error) {
	f, err := os.Open(t.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("tail %s: %w", t.path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("tail %s: %w", t.path, err)
	}
	return f, fi, nil
}

// open opens path as the current file. first is the initial open, where
// FromStart decides the offset; later opens read a new file from its start.
func (t *Tailer) open(first bool) error {
	f, fi, err := t.openPath()
	if f == nil {
		return err
	}
	t.cur, t.curID, t.off, t.sigLen = f, idOf(fi), 0, 0
	if first && !t.opts.FromStart && fi.Size() > 0 {
		t.off = fi.Size()
		var last [1]byte
		if _, err := f.ReadAt(last[:], t.off-1); err == nil && last[0] != '\n' {
			t.skip = true // started inside a line: drop its rest
		}
		t.rememberTail()
	}
	return nil
}

// rememberTail loads the signature bytes before off from the file.
func (t *Tailer) rememberTail() {
	n := int64(len(t.sig))
	if t.off < n {
		n = t.off
	}
	m, _ := t.cur.ReadAt(t.sig[:n], t.off-n)
	t.sigLen = m
	if int64(m) != n {
		t.sigLen = 0
	}
}

// step does one unit of work and reports whether anything happened.
func (t *Tailer) step() (bool, error) {
	if t.cur == nil {
		if err := t.open(false); err != nil || t.cur == nil {
			return false, err
		}
		t.log.Debug("file appeared", "path", t.path)
		return true, nil
	}
	if len(t.old) > 0 {
		if n, err := t.readOld(); n > 0 || err != nil {
			return n > 0, err
		}
	}
	if t.atEOF {
		if err := t.checkTruncate(); err != nil {
			return false, err
		}
	}
	n, err := t.read()
	if err != nil {
		return false, err
	}
	if n > 0 {
		return true, nil
	}
	t.atEOF = true
	return t.checkRotate()
}
