package capture

import (
	"io"
	"runtime"

	"github.com/klauspost/compress/zstd"
)

// frameChunk is the uncompressed size of each independent zstd frame.
const frameChunk = 16 << 20

// framesWriter compresses its input as a sequence of independent zstd
// frames of frameChunk bytes, encoded concurrently (one per CPU) and
// written in order. Concatenated frames are one valid zstd stream for any
// decoder (`zstd -d`, `tar --zstd`); unlike a single streamed frame the
// work spreads over all cores.
type framesWriter struct {
	w       io.Writer
	enc     *zstd.Encoder
	buf     []byte
	pending []chan []byte
	workers int
	err     error
}

func newFramesWriter(w io.Writer) (*framesWriter, error) {
	n := runtime.GOMAXPROCS(0)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(n))
	if err != nil {
		return nil, err
	}
	return &framesWriter{w: w, enc: enc, workers: n, buf: make([]byte, 0, frameChunk)}, nil
}

func (f *framesWriter) Write(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	n := len(p)
	for len(p) > 0 {
		k := min(frameChunk-len(f.buf), len(p))
		f.buf = append(f.buf, p[:k]...)
		p = p[k:]
		if len(f.buf) == frameChunk {
			f.dispatch()
			if f.err != nil {
				return 0, f.err
			}
		}
	}
	return n, nil
}

// dispatch starts encoding the buffered chunk, first writing out the
// oldest frame if every worker is busy.
func (f *framesWriter) dispatch() {
	if len(f.pending) >= f.workers {
		f.flushOne()
	}
	chunk := f.buf
	f.buf = make([]byte, 0, frameChunk)
	out := make(chan []byte, 1)
	f.pending = append(f.pending, out)
	go func() { out <- f.enc.EncodeAll(chunk, make([]byte, 0, len(chunk)/2)) }()
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
