// Package transfer ships a capture archive into a root on the target host
// and runs the captured service there.
//
// Shipping runs three agent calls on the target: transfer.prepare (the
// target checks the manifest, creates the directories and reports which
// files it lacks after reusing what it already holds byte for byte),
// transfer.receive (one zstd-compressed tar stream of the missing files,
// each written under a temporary name and renamed only once its sha256
// matches) and transfer.commit (every file verified again, links and
// device nodes made, then the complete marker written). An interrupted
// transfer is resumed by running it again: files already in the root and
// verified are not sent again.
package transfer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/migrate-tool/migrate/capture"
	"github.com/migrate-tool/migrate/internal/hint"
)

// Caller runs agent requests on the target; host.Host implements it, and
// so does *agent.Client.
type Caller interface {
	Call(ctx context.Context, method string, params, result any) error
	CallStream(ctx context.Context, method string, params any, in io.Reader, out io.Writer, result any) error
}

// Options shape one transfer.
type Options struct {
	Name    string // service name on the target (default: the manifest's service)
	Dest    string // directory holding NAME/root on the target (default DefaultDest)
	NoReuse bool   // send every file, even those the target already holds
	// Progress, if set, is called from the sending goroutine at most every
	// 200ms and once at the end of each stream.
	Progress func(Progress)
	Logger   *slog.Logger
}

// Progress is the state of a running stream.
type Progress struct {
	Done  int64 `json:"done"`  // bytes of file content streamed so far
	Total int64 `json:"total"` // bytes of file content to stream
	Sent  int64 `json:"sent"`  // compressed bytes sent so far (this transfer)
	Final bool  `json:"-"`
}

// Stats are the figures of one transfer.
type Stats struct {
	Name            string        `json:"name"`
	Root            string        `json:"root"`
	Digest          string        `json:"digest"`
	Files           int           `json:"files"`
	FilesSent       int           `json:"files_sent"`
	BytesArchive    int64         `json:"bytes_archive"`
	BytesSent       int64         `json:"bytes_sent"`
	BytesSaved      int64         `json:"bytes_saved"`
	BytesPresent    int64         `json:"bytes_present"` // already in the root (resumed)
	BytesReused     int64         `json:"bytes_reused"`  // copied from the target's own files
	Resent          []string      `json:"resent,omitempty"`
	AlreadyComplete bool          `json:"already_complete"`
	Duration        time.Duration `json:"duration_ns"`
}

// rawThreshold: when at least this share of the file bytes must be sent,
// the archive file is sent as it is instead of being recompressed.
const rawThreshold = 0.9

// Ship sends the archive at archivePath into DEST/NAME/root on the target
// behind c (see the package doc) and returns the figures.
func Ship(ctx context.Context, c Caller, archivePath string, opts Options) (Stats, error) {
	start := time.Now()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r, err := capture.OpenArchive(archivePath)
	if err != nil {
		return Stats{}, hint.With(err, "check the archive path, or capture the service again")
	}
	fi, err := os.Stat(archivePath)
	if err != nil {
		return Stats{}, err
	}
	m := r.Manifest()
	digest, err := m.Digest()
	if err != nil {
		return Stats{}, err
	}
	if opts.Name == "" {
		opts.Name = m.Service
	}
	l, err := NewLayout(opts.Dest, opts.Name)
	if err != nil {
		return Stats{}, err
	}
	s := &shipper{c: c, r: r, archive: archivePath, l: l, opts: opts,
		st: Stats{Name: l.Name, Root: l.Root(), Digest: digest, BytesArchive: fi.Size()}}
	err = s.run(ctx, digest)
	s.st.BytesSaved = max(0, s.st.BytesArchive-s.st.BytesSent)
	s.st.Duration = time.Since(start)
	return s.st, err
}

type shipper struct {
	c       Caller
	r       *capture.Reader
	archive string
	l       Layout
	opts    Options
	st      Stats
	resent  map[int]bool
}

func (s *shipper) run(ctx context.Context, digest string) error {
	m := s.r.Manifest()
	var pr PrepareResult
	err := s.c.Call(ctx, MethodPrepare, prepareParams{Dest: s.l.Dest, Name: s.l.Name, Digest: digest, Manifest: m, NoReuse: s.opts.NoReuse}, &pr)
	if err != nil {
		return fmt.Errorf("prepare %s on the target: %w", s.l.Name, err)
	}
	s.st.Files, s.st.BytesPresent, s.st.BytesReused = pr.Files, pr.PresentBytes, pr.ReusedBytes
	if pr.Complete {
		s.st.AlreadyComplete = true
		return nil
	}
	s.opts.Logger.Debug("target prepared", "need", len(pr.Need), "need_bytes", pr.NeedBytes, "present", pr.PresentBytes, "reused", pr.ReusedBytes)
	s.resent = map[int]bool{}
	if len(pr.Need) > 0 {
		if err := s.sendAll(ctx, pr.Need, pr.NeedBytes); err != nil {
			return err
		}
	}
	for {
		var cr CommitResult
		if err := s.c.Call(ctx, MethodCommit, commitParams{Dest: s.l.Dest, Name: s.l.Name, Digest: digest}, &cr); err != nil {
			return fmt.Errorf("commit %s on the target: %w", s.l.Name, err)
		}
		if cr.Complete {
			return nil
		}
		if err := s.resend(ctx, cr.Bad, "failed verification on the target"); err != nil {
			return err
		}
	}
}

// sendAll streams need; whatever did not arrive intact is sent once more.
func (s *shipper) sendAll(ctx context.Context, need []int, needBytes int64) error {
	var total int64
	for i := range s.r.Manifest().Entries {
		total += s.r.Manifest().Entries[i].Size
	}
	raw := float64(needBytes) >= rawThreshold*float64(total)
	start := time.Now()
	written, serr := s.send(ctx, need, raw)
	took := time.Since(start)
	s.opts.Logger.Debug("stream done", "raw", raw, "files", len(written), "bytes_sent", s.st.BytesSent,
		"took", took.Round(time.Millisecond), "MB_per_s", int(float64(s.st.BytesSent)/1e6/max(took.Seconds(), 1e-3)))
	if ctx.Err() != nil {
		return ctx.Err()
	}
	s.st.FilesSent += len(written)
	got := make(map[int]bool, len(written))
	for _, i := range written {
		got[i] = true
	}
	var missing []int
	for _, i := range need {
		if !got[i] {
			missing = append(missing, i)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if serr != nil {
		s.opts.Logger.Warn("stream ended early", "err", serr, "missing", len(missing))
	}
	return s.resend(ctx, missing, "did not arrive intact")
}

// resend sends files a second time; a file is never sent a third time.
func (s *shipper) resend(ctx context.Context, idx []int, why string) error {
	var again []int
	var paths []string
	for _, i := range idx {
		p := s.r.Manifest().Entries[i].Path
		if s.resent[i] {
			paths = append(paths, p)
			continue
		}
		s.resent[i] = true
		again = append(again, i)
		s.st.Resent = append(s.st.Resent, p)
	}
	if len(paths) > 0 {
		return hint.With(fmt.Errorf("%d files %s twice: %s", len(paths), why, list(paths)),
			"check the target's disk and memory; run the transfer again to retry")
	}
	s.opts.Logger.Warn("sending files again", "count", len(again), "why", why)
	written, err := s.send(ctx, again, false)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	s.st.FilesSent += len(written)
	if len(written) < len(again) {
		if err == nil {
			err = errors.New("stream rejected")
		}
		return hint.With(fmt.Errorf("%d of %d files sent again did not arrive intact: %w", len(again)-len(written), len(again), err),
			"run the transfer again: files already on the target are not sent again")
	}
	return nil
}

func list(paths []string) string {
	if len(paths) > 5 {
		return fmt.Sprintf("%v and %d more", paths[:5], len(paths)-5)
	}
	return fmt.Sprint(paths)
}

// send streams the given file entries (or the whole archive file if raw)
// and returns the entries the target wrote and verified.
func (s *shipper) send(ctx context.Context, idx []int, raw bool) ([]int, error) {
	pr, pw := io.Pipe()
	cw := &counter{w: pw, s: s}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var err error
		if raw {
			err = s.produceRaw(cw)
		} else {
			err = s.produceSubset(cw, idx)
		}
		cw.report(true)
		pw.CloseWithError(err)
	}()
	var rr ReceiveResult
	err := s.c.CallStream(ctx, MethodReceive, receiveParams{Dest: s.l.Dest, Name: s.l.Name, Need: idx}, pr, nil, &rr)
	pr.CloseWithError(errors.New("receive ended"))
	wg.Wait()
	s.st.BytesSent += cw.sent
	if err != nil {
		return nil, hint.With(fmt.Errorf("send files to %s: %w", s.l.Name, err),
			"run the same transfer again: files already on the target are not sent again")
	}
	if rr.Error != "" {
		err = errors.New(rr.Error)
	}
	return rr.Written, err
}

func (s *shipper) produceRaw(cw *counter) error {
	f, err := os.Open(s.archive)
	if err != nil {
		return err
	}
	defer f.Close()
	cw.total = s.st.BytesArchive
	cw.rawDone = true
	// Large writes become large agent frames (os.File's own WriteTo
	// would copy 32 KiB at a time).
	_, err = io.CopyBuffer(cw, struct{ io.Reader }{f}, make([]byte, 1<<20))
	return err
}

func (s *shipper) produceSubset(cw *counter, idx []int) error {
	want := make(map[string]bool, len(idx))
	for _, i := range idx {
		e := &s.r.Manifest().Entries[i]
		want[e.Path] = true
		cw.total += e.Size
	}
	zw, err := zstd.NewWriter(cw, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	left := len(want)
	errDone := errors.New("done")
	err = s.r.Walk(func(e *capture.Entry, body io.Reader) error {
		if body == nil || !want[e.Path] {
			return nil
		}
		hdr := &tar.Header{Name: streamPrefix + e.Path, Typeflag: tar.TypeReg, Mode: 0o600, Size: e.Size, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, &doneReader{r: body, cw: cw}); err != nil {
			return err
		}
		if left--; left == 0 {
			return errDone
		}
		return nil
	})
	if err != nil && err != errDone {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// counter counts compressed bytes on their way to the target and reports
// progress.
type counter struct {
	w       io.Writer
	s       *shipper
	sent    int64
	done    int64
	total   int64
	rawDone bool // done counts the bytes written (raw archive)
	last    time.Time
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.sent += int64(n)
	if c.rawDone {
		c.done += int64(n)
	}
	c.report(false)
	return n, err
}

func (c *counter) report(final bool) {
	if c.s.opts.Progress == nil || (!final && time.Since(c.last) < 200*time.Millisecond) {
		return
	}
	c.last = time.Now()
	c.s.opts.Progress(Progress{Done: c.done, Total: c.total, Sent: c.s.st.BytesSent + c.sent, Final: final})
}

type doneReader struct {
	r  io.Reader
	cw *counter
}

func (d *doneReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	d.cw.done += int64(n)
	return n, err
}
