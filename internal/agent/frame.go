// Package agent is the protocol between the orchestrator and the migrate
// binary running on a host as `migrate agent`: framed, versioned
// request/response messages with a byte stream each way, over any pair of
// pipes (an SSH session's stdin/stdout, or io.Pipes in process).
//
// The wire format is specified in docs/agent-protocol.md.
package agent

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"unicode"
)

// ProtocolVersion is the version spoken by this build. Both sides send it in
// their hello frame; a mismatch ends the session with an error.
const ProtocolVersion = 1

// Frame types.
const (
	frameHello    byte = 'H' // JSON hello, first frame each way
	frameRequest  byte = 'Q' // JSON request
	frameData     byte = 'D' // a chunk of the call's byte stream
	frameEnd      byte = 'E' // end of the caller's byte stream
	frameResponse byte = 'R' // JSON response, ends a call
)

const (
	headerSize   = 5
	maxDataFrame = 1 << 20  // largest data chunk written
	maxFrame     = 16 << 20 // largest frame accepted
)

// ProtocolError reports a malformed, truncated or unexpected frame.
type ProtocolError struct {
	Msg string
}

func (e *ProtocolError) Error() string { return "agent protocol: " + e.Msg }

type frameReader struct {
	r   *bufio.Reader
	buf []byte
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// next reads one frame. The payload is valid until the next call.
func (fr *frameReader) next() (typ byte, payload []byte, err error) {
	var hdr [headerSize]byte
	n, err := io.ReadFull(fr.r, hdr[:])
	if err != nil {
		if err == io.EOF {
			return 0, nil, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, &ProtocolError{fmt.Sprintf("truncated frame header (%d of %d bytes)", n, headerSize)}
		}
		return 0, nil, err
	}
	typ = hdr[0]
	switch typ {
	case frameHello, frameRequest, frameData, frameEnd, frameResponse:
	default:
		return 0, nil, &ProtocolError{fmt.Sprintf("unknown frame type %q (not a migrate agent? it said %q)", typ, printable(hdr[:]))}
	}
	size := binary.BigEndian.Uint32(hdr[1:])
	if size > maxFrame {
		return 0, nil, &ProtocolError{fmt.Sprintf("frame of %d bytes exceeds the %d-byte limit", size, maxFrame)}
	}
	if cap(fr.buf) < int(size) {
		fr.buf = make([]byte, size)
	}
	payload = fr.buf[:size]
	if n, err := io.ReadFull(fr.r, payload); err != nil {
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, &ProtocolError{fmt.Sprintf("truncated %q frame (%d of %d bytes)", typ, n, size)}
		}
		return 0, nil, err
	}
	return typ, payload, nil
}

// peekPrintable returns what is buffered, for error messages about a peer
// that does not speak the protocol at all.
func printable(b []byte) string {
	out := make([]rune, 0, len(b))
	for _, r := range string(b) {
		if !unicode.IsPrint(r) {
			r = '.'
		}
		out = append(out, r)
	}
	return string(out)
}

// frameWriter writes whole frames; it is safe for concurrent use.
type frameWriter struct {
	mu  sync.Mutex
	w   *bufio.Writer
	hdr [headerSize]byte
}

func newFrameWriter(w io.Writer) *frameWriter {
	return &frameWriter{w: bufio.NewWriterSize(w, 64<<10)}
}

func (fw *frameWriter) write(typ byte, payload []byte) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	fw.hdr[0] = typ
	binary.BigEndian.PutUint32(fw.hdr[1:], uint32(len(payload)))
	if _, err := fw.w.Write(fw.hdr[:]); err != nil {
		return err
	}
	if _, err := fw.w.Write(payload); err != nil {
		return err
	}
	return fw.w.Flush()
}

// writeJSON writes v as the payload of one frame.
func (fw *frameWriter) writeJSON(typ byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return fw.write(typ, b)
}

// chunkWriter turns writes into data frames.
type chunkWriter struct{ fw *frameWriter }

func (c chunkWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), maxDataFrame)
		if err := c.fw.write(frameData, p[:k]); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}
