package capture

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/migrate-tool/migrate/internal/hint"
)

// Frame sizes. The tar stream is cut into independent zstd frames at entry
// boundaries (see framesWriter.Boundary); a frame holds at least minFrame
// bytes, since matches cannot cross a frame boundary (each cut costs a
// little ratio, most when it splits a file), and at most maxFrame, so that
// large captures spread over every CPU and start compressing early.
const (
	minFrame = 4 << 20
	maxFrame = 16 << 20
)

// minCmdFrame is the smallest frame zstd(1) gets: its window is 2 MiB
// (zstdLevel), and frames of 2 MiB cost no measurable ratio (nginx's 11 MB:
// 4 frames 0.02% smaller than 2), so a small capture still spreads over
// every core.
const minCmdFrame = 2 << 20

// frameSize is the uncompressed size to aim for in each frame of a tar
// stream of about total bytes: a multiple of workers frames of the same
// size, each at most maxFrame and at least minFrame; with zstd(1), at
// least one frame per worker, each at least minCmdFrame. (Two per worker,
// as before, cost nginx's capture 13 ms more wall and 20–35 ms more CPU:
// a zstd(1) process and a check per frame, for no better spread, since
// the segments compressed during the trace run side by side anyway.)
func frameSize(total int64, workers int) int {
	w := int64(max(workers, 1))
	n := (total + maxFrame - 1) / maxFrame
	lo := int64(minFrame)
	if zstdCommand() != "" {
		n, lo = max(n, w), minCmdFrame
	}
	if n%w != 0 {
		n += w - n%w
	}
	return int(max(lo, (total+n-1)/max(n, 1)))
}

// framesWriter compresses its input as a sequence of independent zstd
// frames, encoded concurrently (one per CPU) and written in order.
// Concatenated frames are one valid zstd stream for any decoder
// (`zstd -d`, `tar --zstd`); unlike a single streamed frame the work
// spreads over all cores. The level (see newEncoder) keeps the archive no
// larger than `tar --zstd` (C zstd -3) of the same files.
type framesWriter struct {
	w       io.Writer
	enc     frameEncoder
	size    int // frame size aimed at, cut at the first entry boundary past it
	max     int // a frame is cut mid-entry at this size: size and a quarter
	buf     []byte
	pending []chan frame
	workers int
	cpus    chan struct{} // if set, shared by several writers: one token per frame being encoded
	ownEnc  bool          // Close closes enc
	check   *frameChecker // if set, every frame is decoded again and compared with its input
	closed  bool
	err     error
}

// newFramesWriter returns a framesWriter aiming at frames of size bytes
// (see frameSize), encoding up to workers of them at once.
func newFramesWriter(w io.Writer, size, workers int) (*framesWriter, error) {
	enc, err := newEncoder(workers)
	if err != nil {
		return nil, err
	}
	f := sharedFramesWriter(w, size, workers, enc)
	f.ownEnc = true
	return f, nil
}

// frameEncoder compresses one frame at a time; EncodeAll is safe for
// concurrent use.
type frameEncoder interface {
	EncodeAll(src, dst []byte) []byte
	Close() error
}

// newEncoder returns the encoder for up to workers frames at once: the
// host's zstd(1) when it has a working one (see zstdCommand), else
// klauspost's pure-Go encoder.
func newEncoder(workers int) (frameEncoder, error) {
	if path := zstdCommand(); path != "" {
		return &cmdEncoder{path: path, workers: workers}, nil
	}
	return newGoEncoder(workers)
}

// newGoEncoder is klauspost's encoder at its "better" level: its default
// level makes archives 1–1.5% larger than C zstd -3 (tar --zstd).
func newGoEncoder(workers int) (*zstd.Encoder, error) {
	return zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(max(workers, 1)))
}

// smallFrame is the size below which a frame is not worth a zstd(1)
// process (a few milliseconds of CPU to start, mostly at the end of the
// archive where nothing else runs): the Go encoder takes it.
const smallFrame = 128 << 10

// zstdLevel is what zstd(1) is given: level 3 with level 4's hash table
// (hlog 18) and a chain table between theirs (clog 17). On nginx's 11 MB
// it takes 18% more CPU than -3 and 10% less than -4, and compresses 0.6%
// better than -3 (0.2% worse than -4): the archive stays about 0.5%
// smaller than tar --zstd (zstd -3 over one frame) of the same files in
// spite of the frame cuts and the manifest, which plain -3 would not
// (0.2% larger). About three times the speed of the Go encoder's "better"
// level.
const zstdLevel = "-3 --zstd=hlog=18,clog=17"

// zstdCommand returns the path of the host's zstd(1) if it is installed
// in /usr/bin or /bin (never looked up in $PATH) and compresses a probe
// that decodes back to itself; "" if not, or if MIGRATE_ZSTD=go.
var zstdCommand = sync.OnceValue(func() string {
	return findZstd(os.Getenv("MIGRATE_ZSTD"), []string{"/usr/bin/zstd", "/bin/zstd"})
})

func findZstd(setting string, candidates []string) string {
	if setting == "go" {
		return ""
	}
	for _, p := range candidates {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		probe := bytes.Repeat([]byte("migrate zstd probe\n"), 64)
		b, err := runZstd(p, probe, nil)
		if err != nil {
			return ""
		}
		dec, err := zstd.NewReader(nil)
		if err != nil {
			return ""
		}
		got, err := dec.DecodeAll(b, nil)
		dec.Close()
		if err != nil || !bytes.Equal(got, probe) {
			return ""
		}
		return p
	}
	return ""
}

// runZstd compresses src into one frame with zstd(1), appended to dst.
func runZstd(path string, src, dst []byte) ([]byte, error) {
	cmd := exec.Command(path, append(strings.Fields(zstdLevel), "-q", "-c", "--no-progress")...)
	cmd.Stdin = bytes.NewReader(src)
	out := bytes.NewBuffer(dst)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", path, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out.Bytes(), nil
}

// cmdEncoder compresses each frame with one run of the host's zstd(1), as
// tar --zstd does; a frame it fails on, and a small one (the manifest, the
// end of the archive), is compressed by the Go encoder.
type cmdEncoder struct {
	path    string
	workers int
	once    sync.Once
	goEnc   *zstd.Encoder
	goErr   error

	smallOnce sync.Once
	small     *zstd.Encoder // for frames under smallFrame
	smallErr  error
}

func (c *cmdEncoder) EncodeAll(src, dst []byte) []byte {
	if len(src) < smallFrame {
		c.smallOnce.Do(func() {
			// Its default level: the better one's tables take milliseconds
			// to set up, more than such a frame takes to compress.
			c.small, c.smallErr = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
		})
		if c.smallErr == nil {
			return c.small.EncodeAll(src, dst)
		}
	}
	if b, err := runZstd(c.path, src, dst); err == nil {
		return b
	}
	c.once.Do(func() { c.goEnc, c.goErr = newGoEncoder(c.workers) })
	if c.goErr != nil {
		// Cannot happen with valid options; an empty frame list fails
		// the archive's verification rather than storing garbage.
		return dst
	}
	return c.goEnc.EncodeAll(src, dst)
}

func (c *cmdEncoder) Close() error {
	if c.small != nil {
		c.small.Close()
	}
	if c.goEnc != nil {
		return c.goEnc.Close()
	}
	return nil
}

// frameChecker decodes each frame just compressed and compares it with
// the bytes it was made from: the check of the compressor (the host's
// zstd(1) or the Go encoder) for an archive whose stream nobody decodes
// again as it is written (a local capture; see Fetch). It costs one
// decompression, done by the compressing worker in parallel, instead of
// a second pass over the whole stream that also hashes every body again.
type frameChecker struct{ dec *zstd.Decoder }

func newFrameChecker(workers int) (*frameChecker, error) {
	// The frame's own checksum is not checked: the decoded bytes are
	// compared with the input itself.
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(max(workers, 1)), zstd.WithDecoderMaxWindow(128<<20),
		zstd.IgnoreChecksum(true))
	if err != nil {
		return nil, err
	}
	return &frameChecker{dec: dec}, nil
}

func (c *frameChecker) check(frame, input []byte) error {
	got, err := c.dec.DecodeAll(frame, make([]byte, 0, len(input)))
	if err == nil && !bytes.Equal(got, input) {
		err = errors.New("it decodes to other bytes than its input")
	}
	if err != nil {
		return hint.With(fmt.Errorf("compressed frame failed its check: %w", err),
			"the host's zstd(1) may be broken; MIGRATE_ZSTD=go uses the built-in encoder")
	}
	return nil
}

func (c *frameChecker) close() {
	if c != nil {
		c.dec.Close()
	}
}

// sharedFramesWriter is newFramesWriter with an encoder that other
// writers use too (its EncodeAll is safe for concurrent use); Close leaves
// it open.
func sharedFramesWriter(w io.Writer, size, workers int, enc frameEncoder) *framesWriter {
	return &framesWriter{w: w, enc: enc, workers: max(workers, 1), size: size, max: size + size/4, buf: make([]byte, 0, size+size/4)}
}

func (f *framesWriter) Write(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	n := len(p)
	for len(p) > 0 {
		k := min(f.max-len(f.buf), len(p))
		f.buf = append(f.buf, p[:k]...)
		p = p[k:]
		if len(f.buf) == f.max {
			f.dispatch()
			if f.err != nil {
				return 0, f.err
			}
		}
	}
	return n, nil
}

// Boundary tells the writer that an entry ends here: the current frame
// is cut if it holds enough.
func (f *framesWriter) Boundary() error {
	if f.err == nil && len(f.buf) >= f.size {
		f.dispatch()
	}
	return f.err
}

// Frames appends complete, already compressed frames, read from r when
// their turn comes; what is buffered becomes a frame of its own first.
func (f *framesWriter) Frames(r io.Reader) error {
	if len(f.buf) > 0 {
		f.dispatch()
	}
	out := make(chan frame, 1)
	out <- frame{r: r}
	f.pending = append(f.pending, out)
	return f.err
}

// frame is an encoded frame, or a reader of ready frames.
type frame struct {
	b   []byte
	r   io.Reader
	err error // the frame failed its check
}

// dispatch starts encoding the buffered chunk, first writing out the
// oldest frame if every worker is busy.
func (f *framesWriter) dispatch() {
	if len(f.pending) >= f.workers {
		f.flushOne()
	}
	chunk := f.buf
	f.buf = make([]byte, 0, f.max)
	out := make(chan frame, 1)
	f.pending = append(f.pending, out)
	if f.cpus != nil {
		f.cpus <- struct{}{} // wait for a CPU: bounds the chunks held over all writers
	}
	go func() {
		if f.cpus != nil {
			defer func() { <-f.cpus }()
		}
		b := f.enc.EncodeAll(chunk, make([]byte, 0, len(chunk)/2))
		var err error
		if f.check != nil {
			err = f.check.check(b, chunk)
		}
		out <- frame{b: b, err: err}
	}()
}

func (f *framesWriter) flushOne() {
	fr := <-f.pending[0]
	f.pending = f.pending[1:]
	switch {
	case f.err != nil:
	case fr.err != nil:
		f.err = fr.err
	case fr.r != nil:
		_, f.err = copyLarge(f.w, fr.r)
	default:
		_, f.err = f.w.Write(fr.b)
	}
}

// Close encodes what is buffered and writes every frame; it does not
// close the underlying writer. After an error it still waits for every
// frame being encoded, so that nothing uses the encoder or the checker
// afterwards. A second Close does nothing.
func (f *framesWriter) Close() error {
	if f.closed {
		return f.err
	}
	f.closed = true
	if len(f.buf) > 0 || len(f.pending) == 0 {
		f.dispatch()
	}
	for len(f.pending) > 0 {
		f.flushOne()
	}
	if f.ownEnc {
		f.enc.Close()
	}
	return f.err
}
