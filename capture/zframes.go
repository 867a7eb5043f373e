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
	pending []chan []byte
	workers int
	cpus    chan struct{} // if set, shared by several writers: one token per frame being encoded
	err     error
}

// newFramesWriter returns a framesWriter aiming at frames of size bytes
// (see frameSize), encoding up to workers of them at once.
func newFramesWriter(w io.Writer, size, workers int) (*framesWriter, error) {
	n := max(workers, 1)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(n))
	if err != nil {
		return nil, err
	}
	return &framesWriter{w: w, enc: enc, workers: n, size: size, max: size + size/4, buf: make([]byte, 0, size+size/4)}, nil
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

// Frames appends complete, already compressed frames; what is buffered
// becomes a frame of its own first.
func (f *framesWriter) Frames(b []byte) error {
	if len(f.buf) > 0 {
		f.dispatch()
	}
	for len(f.pending) > 2*f.workers {
		f.flushOne() // bound what waits in memory
	}
	out := make(chan []byte, 1)
	out <- b
	f.pending = append(f.pending, out)
	return f.err
}

// dispatch starts encoding the buffered chunk, first writing out the
// oldest frame if every worker is busy.
func (f *framesWriter) dispatch() {
	if len(f.pending) >= f.workers {
		f.flushOne()
	}
	chunk := f.buf
	f.buf = make([]byte, 0, f.max)
	out := make(chan []byte, 1)
	f.pending = append(f.pending, out)
	go func() {
		if f.cpus != nil {
			f.cpus <- struct{}{}
			defer func() { <-f.cpus }()
		}
		out <- f.enc.EncodeAll(chunk, make([]byte, 0, len(chunk)/2))
	}()
}

func (f *framesWriter) flushOne() {
	frame := <-f.pending[0]
	f.pending = f.pending[1:]
	if f.err == nil {
		_, f.err = f.w.Write(frame)
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
	f.enc.Close()
	return f.err
}
