package capture

import (
	"io"

	"github.com/klauspost/compress/zstd"
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

// frameSize is the uncompressed size to aim for in each frame of a tar
// stream of about total bytes: a multiple of workers frames of the same
// size, each at most maxFrame and at least minFrame.
func frameSize(total int64, workers int) int {
	n := (total + maxFrame - 1) / maxFrame
	if w := int64(max(workers, 1)); n%w != 0 {
		n += w - n%w
	}
	return int(max(minFrame, (total+n-1)/max(n, 1)))
}

// framesWriter compresses its input as a sequence of independent zstd
// frames, encoded concurrently (one per CPU) and written in order.
// Concatenated frames are one valid zstd stream for any decoder
// (`zstd -d`, `tar --zstd`); unlike a single streamed frame the work
// spreads over all cores. The "better" level keeps the archive no larger
// than `tar --zstd` (C zstd -3) of the same files.
type framesWriter struct {
	w       io.Writer
	enc     *zstd.Encoder
	size    int // frame size aimed at, cut at the first entry boundary past it
	max     int // a frame is cut mid-entry at this size: size and a quarter
	buf     []byte
	pending []chan frame
	workers int
	cpus    chan struct{} // if set, shared by several writers: one token per frame being encoded
	ownEnc  bool          // Close closes enc
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

// newEncoder returns the encoder for up to workers frames at once.
func newEncoder(workers int) (*zstd.Encoder, error) {
	return zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(max(workers, 1)))
}

// sharedFramesWriter is newFramesWriter with an encoder that other
// writers use too (its EncodeAll is safe for concurrent use); Close leaves
// it open.
func sharedFramesWriter(w io.Writer, size, workers int, enc *zstd.Encoder) *framesWriter {
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
	b []byte
	r io.Reader
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
		out <- frame{b: f.enc.EncodeAll(chunk, make([]byte, 0, len(chunk)/2))}
	}()
}

func (f *framesWriter) flushOne() {
	fr := <-f.pending[0]
	f.pending = f.pending[1:]
	switch {
	case f.err != nil:
	case fr.r != nil:
		_, f.err = io.Copy(f.w, fr.r)
	default:
		_, f.err = f.w.Write(fr.b)
	}
}

// Close encodes what is buffered and writes every frame; it does not
// close the underlying writer.
func (f *framesWriter) Close() error {
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
