package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"time"
)

// endpoint is one side of a forwarded message: a buffered reader or
// writer plus the raw TCP connection under it when the kernel can splice.
type endpoint struct {
	conn    net.Conn // the connection (possibly TLS)
	raw     *net.TCPConn
	br      *bufio.Reader
	bw      *bufio.Writer
	timeout time.Duration // idle limit per read or write while streaming
	client  bool
	wdl     bool // a write deadline is set
}

// sideError marks a failure on the client's side of a copy: which side failed decides whether
// the backend is blamed: a client's failure never is.
type sideError struct {
	client bool
	err    error
}

func (e *sideError) Error() string { return e.err.Error() }
func (e *sideError) Unwrap() error { return e.err }

func srcErr(src *endpoint, err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return &sideError{client: src.isClient(), err: err}
}

func dstErr(dst *endpoint, err error) error { return &sideError{client: dst.isClient(), err: err} }

func (e *endpoint) isClient() bool { return e.client }

const spliceMin = 64 << 10
const spliceChunk = 4 << 20

// copyN copies exactly n bytes from src to dst, flushing dst whenever src
// has nothing buffered so that streams are never held back.
func copyN(dst, src *endpoint, n int64) (int64, error) {
	var done int64
	for done < n {
		if src.br.Buffered() == 0 {
			if dst.bw.Buffered() > 0 {
				dst.setWriteDeadline()
				if err := dst.bw.Flush(); err != nil {
					return done, dstErr(dst, err)
				}
			}
			if n-done >= spliceMin && src.raw != nil && dst.raw != nil {
				k, err := spliceN(dst, src, n-done)
				done += k
				return done, err
			}
			src.setReadDeadline()
			if _, err := src.br.Peek(1); err != nil {
				return done, srcErr(src, err)
			}
		}
		k := min(int64(src.br.Buffered()), n-done)
		b, _ := src.br.Peek(int(k))
		if _, err := dst.bw.Write(b); err != nil {
			return done, dstErr(dst, err)
		}
		src.br.Discard(int(k))
		done += k
	}
	return done, nil
}

// spliceN moves n bytes between raw TCP connections in chunks, refreshing
// the deadlines between chunks.
func spliceN(dst, src *endpoint, n int64) (int64, error) {
	var done int64
	for done < n {
		k := min(n-done, spliceChunk)
		src.setReadDeadline()
		dst.setWriteDeadline()
		c, err := dst.raw.ReadFrom(io.LimitReader(src.raw, k))
		done += c
		if err != nil {
			if isWriteErr(err) {
				return done, dstErr(dst, err)
			}
			return done, srcErr(src, err)
		}
		if c < k {
			return done, srcErr(src, io.ErrUnexpectedEOF)
		}
	}
	return done, nil
}

func isWriteErr(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "write"
}

// copyUntilEOF copies src to dst until src closes.
func copyUntilEOF(dst, src *endpoint) (int64, error) {
	var done int64
	for {
		if src.br.Buffered() == 0 {
			if dst.bw.Buffered() > 0 {
				dst.setWriteDeadline()
				if err := dst.bw.Flush(); err != nil {
					return done, dstErr(dst, err)
				}
			}
			src.setReadDeadline()
			if _, err := src.br.Peek(1); err != nil {
				if err == io.EOF {
					return done, nil
				}
				return done, srcErr(src, err)
			}
		}
		b, _ := src.br.Peek(src.br.Buffered())
		if _, err := dst.bw.Write(b); err != nil {
			return done, dstErr(dst, err)
		}
		src.br.Discard(len(b))
		done += int64(len(b))
	}
}

var (
	errBadChunk = errors.New("malformed chunked body")
	errTooLarge = errors.New("request body larger than MaxRequest")
)

// copyChunked re-frames a chunked body from src to dst. With dechunk the
// data is written without chunk framing (for an HTTP/1.0 client).
// Malformed chunk sizes, and more than limit bytes (if limit > 0), are
// errors on the source side.
func copyChunked(dst, src *endpoint, dechunk bool, limit int64) (int64, error) {
	var done int64
	var tmp [20]byte
	for {
		if src.br.Buffered() == 0 && dst.bw.Buffered() > 0 {
			dst.setWriteDeadline()
			if err := dst.bw.Flush(); err != nil {
				return done, dstErr(dst, err)
			}
		}
		src.setReadDeadline()
		line, err := src.br.ReadSlice('\n')
		if err != nil {
			if err == bufio.ErrBufferFull {
				err = errBadChunk
			}
			return done, srcErr(src, err)
		}
		size, ok := parseChunkSize(line)
		if !ok {
			return done, srcErr(src, errBadChunk)
		}
		if size == 0 {
			return done, copyTrailers(dst, src, dechunk)
		}
		if limit > 0 && done+size > limit {
			return done, srcErr(src, errTooLarge)
		}
		if !dechunk {
			b := strconv.AppendInt(tmp[:0], size, 16)
			b = append(b, '\r', '\n')
			if _, err := dst.bw.Write(b); err != nil {
				return done, dstErr(dst, err)
			}
		}
		k, err := copyN(dst, src, size)
		done += k
		if err != nil {
			return done, err
		}
		crlf, err := src.br.ReadSlice('\n')
		if err != nil || !(len(crlf) == 2 && crlf[0] == '\r' || len(crlf) == 1) {
			return done, srcErr(src, errBadChunk)
		}
		if !dechunk {
			if _, err := dst.bw.WriteString("\r\n"); err != nil {
				return done, dstErr(dst, err)
			}
		}
	}
}

func copyTrailers(dst, src *endpoint, dechunk bool) error {
	if !dechunk {
		dst.bw.WriteString("0\r\n")
	}
	for i := 0; ; i++ {
		line, err := src.br.ReadSlice('\n')
		if err != nil || i > maxHeaderN {
			return srcErr(src, errBadChunk)
		}
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		if len(line) == 0 {
			if !dechunk {
				dst.bw.WriteString("\r\n")
			}
			return nil
		}
		if !validTrailer(line) {
			return srcErr(src, errBadChunk)
		}
		if !dechunk {
			dst.bw.Write(line)
			if _, err := dst.bw.WriteString("\r\n"); err != nil {
				return dstErr(dst, err)
			}
		}
	}
}

// validTrailer accepts "name: value" with a token name and no CR or NUL,
// so a trailer is passed on exactly as the backend will read it.
func validTrailer(line []byte) bool {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return false
	}
	for _, c := range line[:colon] {
		if !isTokenChar(c) {
			return false
		}
	}
	return bytes.IndexByte(line, '\r') < 0 && bytes.IndexByte(line, 0) < 0
}

// parseChunkSize parses "HEX[;ext]\r\n".
func parseChunkSize(line []byte) (int64, bool) {
	n := len(line) - 1
	if n > 0 && line[n-1] == '\r' {
		n--
	}
	line = line[:n]
	var size int64
	digits := 0
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		var v byte
		switch {
		case '0' <= c && c <= '9':
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			v = c - 'A' + 10
		default:
			goto rest
		}
		digits++
		if digits > 15 {
			return 0, false
		}
		size = size<<4 | int64(v)
	}
rest:
	if digits == 0 {
		return 0, false
	}
	for ; i < len(line); i++ {
		if line[i] == ';' {
			return size, true
		}
		if line[i] != ' ' && line[i] != '\t' {
			return 0, false
		}
	}
	return size, true
}

func (e *endpoint) setReadDeadline() {
	if e.timeout > 0 {
		e.conn.SetReadDeadline(time.Now().Add(e.timeout))
	}
}

func (e *endpoint) setWriteDeadline() {
	if e.timeout > 0 {
		e.wdl = true
		e.conn.SetWriteDeadline(time.Now().Add(e.timeout))
	}
}
