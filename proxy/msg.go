package proxy

import (
	"bufio"
	"bytes"
	"errors"
)

// Limits on a request or response head.
const (
	maxLine       = 16 << 10 // request line or one header line: bufio size
	maxHeadBytes  = 64 << 10
	maxHeaderN    = 128
	clientBufSize = maxLine
)

// httpError is a request that must be refused with Status.
type httpError struct {
	Status int
	Msg    string
}

func (e *httpError) Error() string { return e.Msg }

func badRequest(msg string) error { return &httpError{400, msg} }

var (
	errURITooLong     = &httpError{414, "request line too long"}
	errHeaderTooLarge = &httpError{431, "request header too large"}
	errBadResponse    = errors.New("malformed response from backend")
)

// span is a byte range inside msgHead.buf.
type span struct{ s, e int32 }

type hdr struct{ name, value span }

// msgHead is a parsed request or response head. Its byte slices all point
// into buf, which is reused from one message to the next.
type msgHead struct {
	buf  []byte
	hdrs []hdr

	// request line or status line
	method, target span // request
	status         int  // response
	reason         span
	minor          int // HTTP/1.minor

	contentLength int64 // -1 when absent
	chunked       bool
	teOther       bool // Transfer-Encoding present but not chunked-last
	connClose     bool
	connKeepAlive bool
	connUpgrade   bool
	upgrade       span
	host          span
	expect100     bool
	connTokens    []span // names listed in Connection
}

func (m *msgHead) bytes(s span) []byte { return m.buf[s.s:s.e] }
func (m *msgHead) str(s span) string   { return string(m.buf[s.s:s.e]) }

func (m *msgHead) reset() {
	m.buf = m.buf[:0]
	m.hdrs = m.hdrs[:0]
	m.connTokens = m.connTokens[:0]
	m.contentLength = -1
	m.chunked, m.teOther, m.connClose, m.connKeepAlive, m.connUpgrade, m.expect100 = false, false, false, false, false, false
	m.upgrade, m.host, m.reason = span{}, span{}, span{}
	m.status, m.minor = 0, 1
}

// get returns the value of the first header named name (lower case).
func (m *msgHead) get(name string) ([]byte, bool) {
	for _, h := range m.hdrs {
		if equalFoldASCII(m.bytes(h.name), name) {
			return m.bytes(h.value), true
		}
	}
	return nil, false
}

// readLine returns one line without its CRLF, copied into m.buf.
func (m *msgHead) readLine(br *bufio.Reader, first bool, isReq bool) (span, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if err == bufio.ErrBufferFull {
			if first && isReq {
				return span{}, errURITooLong
			}
			if isReq {
				return span{}, errHeaderTooLarge
			}
			return span{}, errBadResponse
		}
		return span{}, err
	}
	if len(m.buf)+len(line) > maxHeadBytes {
		if isReq {
			return span{}, errHeaderTooLarge
		}
		return span{}, errBadResponse
	}
	n := len(line) - 1
	if n > 0 && line[n-1] == '\r' {
		n--
	}
	s := int32(len(m.buf))
	m.buf = append(m.buf, line[:n]...)
	return span{s, s + int32(n)}, nil
}

// readRequest reads a request head. io.EOF before any byte means the
// client closed an idle connection.
func (m *msgHead) readRequest(br *bufio.Reader) error {
	m.reset()
	var l span
	var err error
	for i := 0; ; i++ {
		l, err = m.readLine(br, true, true)
		if err != nil {
			return err
		}
		if l.e > l.s || i > 2 {
			break
		}
	}
	if err := m.parseRequestLine(l); err != nil {
		return err
	}
	if err := m.readHeaders(br, true); err != nil {
		return err
	}
	return m.checkRequestFraming()
}

func (m *msgHead) parseRequestLine(l span) error {
	b := m.bytes(l)
	sp1 := bytes.IndexByte(b, ' ')
	if sp1 <= 0 {
		return badRequest("malformed request line")
	}
	rest := b[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return badRequest("malformed request line")
	}
	for _, c := range b[:sp1] {
		if !isTokenChar(c) {
			return badRequest("malformed method")
		}
	}
	for _, c := range rest[:sp2] {
		if c <= ' ' || c == 0x7f {
			return badRequest("malformed request target")
		}
	}
	minor, ok := parseVersion(rest[sp2+1:])
	if !ok {
		return badRequest("unsupported protocol version")
	}
	m.minor = minor
	m.method = span{l.s, l.s + int32(sp1)}
	m.target = span{l.s + int32(sp1) + 1, l.s + int32(sp1) + 1 + int32(sp2)}
	return nil
}

func parseVersion(v []byte) (int, bool) {
	if len(v) != 8 || string(v[:7]) != "HTTP/1." || v[7] < '0' || v[7] > '9' {
		return 0, false
	}
	return int(v[7] - '0'), true
}

// readResponse reads a response head from a backend.
func (m *msgHead) readResponse(br *bufio.Reader) error {
	m.reset()
	l, err := m.readLine(br, true, false)
	if err != nil {
		return err
	}
	b := m.bytes(l)
	if len(b) < 12 || b[8] != ' ' {
		return errBadResponse
	}
	minor, ok := parseVersion(b[:8])
	if !ok {
		return errBadResponse
	}
	m.minor = minor
	st := 0
	for _, c := range b[9:12] {
		if c < '0' || c > '9' {
			return errBadResponse
		}
		st = st*10 + int(c-'0')
	}
	if len(b) > 12 && b[12] != ' ' {
		return errBadResponse
	}
	m.status = st
	if len(b) > 13 {
		m.reason = span{l.s + 13, l.e}
	}
	if err := m.readHeaders(br, false); err != nil {
		return err
	}
	if m.teOther && !m.chunked {
		m.contentLength = -1 // body runs until close
	}
	return nil
}

func (m *msgHead) readHeaders(br *bufio.Reader, isReq bool) error {
	bad := func(msg string) error {
		if isReq {
			return badRequest(msg)
		}
		return errBadResponse
	}
	for {
		l, err := m.readLine(br, false, isReq)
		if err != nil {
			return err
		}
		if l.e == l.s {
			return nil
		}
		if len(m.hdrs) >= maxHeaderN {
			if isReq {
				return errHeaderTooLarge
			}
			return errBadResponse
		}
		b := m.bytes(l)
		if b[0] == ' ' || b[0] == '\t' {
			return bad("obsolete header line folding")
		}
		colon := bytes.IndexByte(b, ':')
		if colon <= 0 {
			return bad("malformed header line")
		}
		for _, c := range b[:colon] {
			if !isTokenChar(c) {
				return bad("malformed header name")
			}
		}
		vs, ve := colon+1, len(b)
		for vs < ve && (b[vs] == ' ' || b[vs] == '\t') {
			vs++
		}
		for ve > vs && (b[ve-1] == ' ' || b[ve-1] == '\t') {
			ve--
		}
		for _, c := range b[vs:ve] {
			if c == '\r' || c == 0 {
				return bad("control character in header value")
			}
		}
		h := hdr{span{l.s, l.s + int32(colon)}, span{l.s + int32(vs), l.s + int32(ve)}}
		m.hdrs = append(m.hdrs, h)
		if err := m.noteHeader(h, isReq); err != nil {
			return err
		}
	}
}

// noteHeader records the headers that govern framing and connection use.
func (m *msgHead) noteHeader(h hdr, isReq bool) error {
	name, val := m.bytes(h.name), m.bytes(h.value)
	switch len(name) {
	case 4:
		if equalFoldASCII(name, "host") {
			if isReq && m.host.e > 0 {
				return badRequest("duplicate Host header")
			}
			m.host = h.value
		}
	case 6:
		if equalFoldASCII(name, "expect") && equalFoldASCII(val, "100-continue") {
			m.expect100 = true
		}
	case 7:
		if equalFoldASCII(name, "upgrade") {
			m.upgrade = h.value
		}
	case 10:
		if equalFoldASCII(name, "connection") {
			m.noteConnection(h.value)
		}
	case 14:
		if equalFoldASCII(name, "content-length") {
			n, ok := parseContentLength(val)
			if !ok || (m.contentLength >= 0 && m.contentLength != n) {
				if isReq {
					return badRequest("bad or conflicting Content-Length")
				}
				return errBadResponse
			}
			m.contentLength = n
		}
	case 17:
		if equalFoldASCII(name, "transfer-encoding") {
			m.noteTE(val)
		}
	}
	return nil
}

func (m *msgHead) noteConnection(v span) {
	b := m.bytes(v)
	start := 0
	for i := 0; i <= len(b); i++ {
		if i < len(b) && b[i] != ',' {
			continue
		}
		s, e := start, i
		for s < e && (b[s] == ' ' || b[s] == '\t') {
			s++
		}
		for e > s && (b[e-1] == ' ' || b[e-1] == '\t') {
			e--
		}
		start = i + 1
		if s == e {
			continue
		}
		tok := b[s:e]
		switch {
		case equalFoldASCII(tok, "close"):
			m.connClose = true
		case equalFoldASCII(tok, "keep-alive"):
			m.connKeepAlive = true
		case equalFoldASCII(tok, "upgrade"):
			m.connUpgrade = true
		default:
			m.connTokens = append(m.connTokens, span{v.s + int32(s), v.s + int32(e)})
		}
	}
}

func (m *msgHead) noteTE(v []byte) {
	// The last coding decides; anything after chunked is an error.
	last := v
	if i := bytes.LastIndexByte(v, ','); i >= 0 {
		last = v[i+1:]
	}
	last = bytes.TrimSpace(last)
	if equalFoldASCII(last, "chunked") && !m.chunked {
		m.chunked = true
		if bytes.IndexByte(v, ',') >= 0 {
			m.teOther = true // chunked with other codings: refused for requests
		}
		return
	}
	m.teOther = true
	m.chunked = false
}

func (m *msgHead) checkRequestFraming() error {
	if m.teOther {
		return badRequest("unsupported Transfer-Encoding")
	}
	if m.chunked && m.contentLength >= 0 {
		return badRequest("both Content-Length and Transfer-Encoding")
	}
	if m.chunked && m.minor == 0 {
		return badRequest("Transfer-Encoding in HTTP/1.0")
	}
	if m.minor >= 1 && m.host.e == 0 {
		return badRequest("missing Host header")
	}
	return nil
}

func parseContentLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// keepAlive reports whether the sender wants to keep the connection.
func (m *msgHead) keepAlive() bool {
	if m.minor == 0 {
		return m.connKeepAlive && !m.connClose
	}
	return !m.connClose
}

func isTokenChar(c byte) bool {
	return tokenTable[c]
}

var tokenTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-32] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// equalFoldASCII compares b with the lower-case ASCII string s.
func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 32
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
