package accesslog

import "bytes"

// cursor walks a line left to right. Every method returns ok=false instead
// of panicking on short or malformed input.
type cursor struct {
	b []byte
	i int
}

func (c *cursor) rest() []byte { return c.b[c.i:] }
func (c *cursor) done() bool   { return c.i >= len(c.b) }

// skipSpaces skips one or more blanks.
func (c *cursor) skipSpaces() {
	for c.i < len(c.b) && c.b[c.i] == ' ' {
		c.i++
	}
}

// token returns the bytes up to the next space and skips the spaces after
// it. Tokens are short, so a plain loop beats bytes.IndexByte here.
func (c *cursor) token() ([]byte, bool) {
	b, i := c.b, c.i
	if i >= len(b) || b[i] == ' ' {
		return nil, false
	}
	j := i
	for j < len(b) && b[j] != ' ' {
		j++
	}
	tok := b[i:j]
	for j < len(b) && b[j] == ' ' {
		j++
	}
	c.i = j
	return tok, true
}

// quoted reads a "..." field, honouring backslash escapes (Apache \" and
// nginx \x22), and returns the raw content between the quotes.
func (c *cursor) quoted() ([]byte, bool) {
	if c.i >= len(c.b) || c.b[c.i] != '"' {
		return nil, false
	}
	start := c.i + 1
	j := start
	for {
		n := bytes.IndexByte(c.b[j:], '"')
		if n < 0 {
			return nil, false
		}
		j += n
		// Count the backslashes just before the quote: odd means escaped.
		k := j - 1
		for k >= start && c.b[k] == '\\' {
			k--
		}
		if (j-1-k)%2 == 0 {
			break
		}
		j++
	}
	c.i = j + 1
	c.skipSpaces()
	return c.b[start:j], true
}

// bracketed reads a [...] field.
func (c *cursor) bracketed() ([]byte, bool) {
	if c.i >= len(c.b) || c.b[c.i] != '[' {
		return nil, false
	}
	n := bytes.IndexByte(c.b[c.i:], ']')
	if n < 0 {
		return nil, false
	}
	v := c.b[c.i+1 : c.i+n]
	c.i += n + 1
	c.skipSpaces()
	return v, true
}

// literal skips s followed by spaces.
func (c *cursor) literal(s string) bool {
	if !bytes.HasPrefix(c.b[c.i:], []byte(s)) {
		return false
	}
	c.i += len(s)
	c.skipSpaces()
	return true
}

// atoi parses a non-negative decimal number of at most 18 digits.
func atoi(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return 0, false
		}
		n = n*10 + int64(ch-'0')
	}
	return n, true
}

// parseBytes reads a CLF size: digits, or "-" for none. HAProxy may prefix
// a "+" when the count is truncated.
func parseBytes(b []byte) (int64, bool) {
	if len(b) == 1 && b[0] == '-' {
		return 0, true
	}
	if len(b) > 1 && b[0] == '+' {
		b = b[1:]
	}
	return atoi(b)
}

// parseStatus reads a three-digit status (or "-" for none).
func parseStatus(b []byte) (int, bool) {
	if len(b) == 1 && b[0] == '-' {
		return 0, true
	}
	if len(b) != 3 {
		return 0, false
	}
	n, ok := atoi(b)
	return int(n), ok
}

// splitRequest splits a request line "GET /path HTTP/1.1" into method and
// target. Malformed lines ("-", junk) give empty strings and still count.
func splitRequest(b []byte) (method, target []byte) {
	sp := bytes.IndexByte(b, ' ')
	if sp <= 0 {
		return nil, nil
	}
	if method = validMethod(b[:sp]); method == nil {
		return nil, nil
	}
	target = b[sp+1:]
	if last := bytes.LastIndexByte(target, ' '); last >= 0 && bytes.HasPrefix(target[last+1:], []byte("HTTP/")) {
		target = target[:last]
	}
	return method, target
}

// stripPort removes a trailing ":port" from a host name or [v6]:port.
func stripPort(b []byte) []byte {
	if len(b) > 0 && b[0] == '[' {
		if n := bytes.IndexByte(b, ']'); n > 0 {
			return b[1:n]
		}
		return b
	}
	n := bytes.LastIndexByte(b, ':')
	if n < 0 || bytes.IndexByte(b[:n], ':') >= 0 { // bare IPv6: keep
		return b
	}
	if _, ok := atoi(b[n+1:]); !ok {
		return b
	}
	return b[:n]
}

// validMethod returns b if it looks like an HTTP method (upper-case
// letters), else nil.
func validMethod(b []byte) []byte {
	for _, ch := range b {
		if ch < 'A' || ch > 'Z' {
			return nil
		}
	}
	return b
}
