package accesslog

import "bytes"

// kind selects a line parser. A switch rather than function values keeps
// the cursor on the stack.
type kind uint8

const (
	kNone kind = iota
	kCommon
	kCombined
	kVhostCombined
	kPound1
	kPound2
	kPound5
	kHAProxy
)

// parseAs parses the message part of a line (after any syslog prefix) into
// r. It returns false when the line is not in the format; r may then hold
// partial data.
func (p *Parser) parseAs(k kind, c *cursor, r *Record) bool {
	switch k {
	case kCommon:
		return parseCommon(p, c, r)
	case kCombined:
		return parseCombined(p, c, r)
	case kVhostCombined:
		return parseVhostCombined(p, c, r)
	case kPound1:
		return parsePound1(p, c, r)
	case kPound2:
		return parsePound2(p, c, r)
	case kPound5:
		return parsePound5(p, c, r)
	case kHAProxy:
		return parseHAProxy(p, c, r)
	}
	return false
}

// clfBody parses `%l %u %t "%r" %>s %b`, the part every CLF-derived format
// shares after the client.
func (p *Parser) clfBody(c *cursor, r *Record) bool {
	if _, ok := c.token(); !ok { // %l
		return false
	}
	if _, ok := c.token(); !ok { // %u
		return false
	}
	ts, ok := c.bracketed()
	if !ok {
		return false
	}
	if r.Time, ok = p.clf(ts); !ok {
		return false
	}
	req, ok := c.quoted()
	if !ok {
		return false
	}
	p.request(req, r)
	st, ok := c.token()
	if !ok {
		return false
	}
	if r.Status, ok = parseStatus(st); !ok {
		return false
	}
	b, ok := c.token()
	if !ok {
		return false
	}
	r.Bytes, ok = parseBytes(b)
	return ok
}

// refererAgent parses ` "%{Referer}i" "%{User-Agent}i"`.
func (p *Parser) refererAgent(c *cursor, r *Record) bool {
	if p.opts.SkipAgent && p.fixed != kNone {
		return true
	}
	ref, ok := c.quoted()
	if !ok {
		return false
	}
	ua, ok := c.quoted()
	if !ok {
		return false
	}
	if !p.opts.SkipAgent {
		r.Referer = p.str(ref)
		r.UserAgent = p.str(ua)
	}
	return true
}

func parseCommon(p *Parser, c *cursor, r *Record) bool {
	h, ok := c.token()
	if !ok {
		return false
	}
	p.client(h, r)
	return p.clfBody(c, r) && c.done()
}

// parseCombined accepts extra fields after the user agent (combinedio's
// %I %O, nginx's $http_x_forwarded_for).
func parseCombined(p *Parser, c *cursor, r *Record) bool {
	h, ok := c.token()
	if !ok {
		return false
	}
	p.client(h, r)
	return p.clfBody(c, r) && p.refererAgent(c, r)
}

// parseVhostCombined reads "%v:%p %h ..." (Apache, Pound 4 LogLevel 3/5)
// and "Host %a ..." (Pound 2 LogLevel 3/5, Host header as sent, or "-").
func parseVhostCombined(p *Parser, c *cursor, r *Record) bool {
	v, ok := c.token()
	if !ok {
		return false
	}
	h, ok := c.token()
	if !ok {
		return false
	}
	p.host(v, r)
	p.client(h, r)
	return p.clfBody(c, r) && p.refererAgent(c, r)
}

// parsePound5 is vhost_combined followed by "(service -> backend) 0.002 sec".
func parsePound5(p *Parser, c *cursor, r *Record) bool {
	if !parseVhostCombined(p, c, r) {
		return false
	}
	if p.opts.SkipAgent && p.fixed != kNone {
		return true
	}
	_, ok := serviceSuffix(c.rest())
	return ok
}

// serviceSuffix checks for "(X -> Y) 0.123 sec" and returns X.
func serviceSuffix(b []byte) ([]byte, bool) {
	if len(b) < 12 || b[0] != '(' || !bytes.HasSuffix(b, []byte(" sec")) {
		return nil, false
	}
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return nil, false
	}
	inner := b[1:end]
	arrow := bytes.Index(inner, []byte(" -> "))
	if arrow < 0 {
		return nil, false
	}
	secs := b[end+1 : len(b)-4]
	if len(secs) < 2 || secs[0] != ' ' {
		return nil, false
	}
	for _, ch := range secs[1:] {
		if (ch < '0' || ch > '9') && ch != '.' {
			return nil, false
		}
	}
	return inner[:arrow], true
}

// poundRegular parses LogLevel 1: "CLIENT METHOD URI PROTO - RESPONSE"
// where RESPONSE is the backend's status line ("HTTP/1.1 200 OK"), a bare
// "301 Moved Permanently" (Pound 4 special backends) or "REDIRECT url"
// (Pound 2 redirects, status unknown). It returns the text after the
// status code.
func (p *Parser) poundRegular(c *cursor, r *Record) ([]byte, bool) {
	h, ok := c.token()
	if !ok {
		return nil, false
	}
	p.client(h, r)
	rest := c.rest()
	// Fast path: "METHOD URI HTTP/x.y - ".
	fast := *c
	m, ok1 := fast.token()
	u, ok2 := fast.token()
	pr, ok3 := fast.token()
	if ok1 && ok2 && ok3 && bytes.HasPrefix(pr, []byte("HTTP/")) && fast.literal("- ") {
		r.Method = method(validMethod(m), p)
		if !p.opts.SkipPath {
			r.Path = string(u)
		}
		return p.poundResponse(fast.rest(), r)
	}
	sep := bytes.Index(rest, []byte(" - "))
	if sep < 0 {
		return nil, false
	}
	// The request line may itself contain " - "; the response starts at
	// the last separator that is followed by a plausible response.
	for {
		next := bytes.Index(rest[sep+3:], []byte(" - "))
		if next < 0 || responseStart(rest[sep+3:]) {
			break
		}
		sep += 3 + next
	}
	p.request(rest[:sep], r)
	return p.poundResponse(rest[sep+3:], r)
}

// poundResponse parses the response part of a LogLevel 1 line and returns
// what follows the status code.
func (p *Parser) poundResponse(b []byte, r *Record) ([]byte, bool) {
	resp := cursor{b: b}
	tok, ok := resp.token()
	if !ok {
		return nil, false
	}
	switch {
	case bytes.HasPrefix(tok, []byte("HTTP/")):
		st, ok := resp.token()
		if !ok {
			return nil, false
		}
		if r.Status, ok = parseStatus(st); !ok {
			return nil, false
		}
	case string(tok) == "REDIRECT":
		r.Status = 0
	default:
		if r.Status, ok = parseStatus(tok); !ok {
			return nil, false
		}
	}
	return resp.rest(), true
}

func responseStart(b []byte) bool {
	if bytes.HasPrefix(b, []byte("HTTP/")) || bytes.HasPrefix(b, []byte("REDIRECT ")) {
		return true
	}
	return len(b) >= 4 && b[3] == ' ' && b[0] >= '1' && b[0] <= '5'
}

func parsePound1(p *Parser, c *cursor, r *Record) bool {
	_, ok := p.poundRegular(c, r)
	return ok
}

// parsePound2 is LogLevel 1 followed by "(host/service -> backend) 0.002 sec".
func parsePound2(p *Parser, c *cursor, r *Record) bool {
	tail, ok := p.poundRegular(c, r)
	if !ok {
		return false
	}
	// The suffix starts at the last "(" that opens the line or follows a
	// space (backend names hold no parentheses).
	open := bytes.LastIndexByte(tail, '(')
	if open < 0 || (open > 0 && tail[open-1] != ' ') {
		return false
	}
	svc, ok := serviceSuffix(tail[open:])
	if !ok {
		return false
	}
	if n := bytes.IndexByte(svc, '/'); n >= 0 && n > 0 {
		p.host(svc[:n], r)
	}
	return true
}

// parseHAProxy reads "option httplog":
//
//	CLIENT:PORT [06/Feb/2009:12:14:14.655] FRONTEND BACKEND/SERVER TR/TW/TC/TR/TA STATUS BYTES COOKIE COOKIE TERM CONNS QUEUES {HDRS} {HDRS} "REQUEST"
func parseHAProxy(p *Parser, c *cursor, r *Record) bool {
	cp, ok := c.token()
	if !ok {
		return false
	}
	n := bytes.LastIndexByte(cp, ':')
	if n <= 0 {
		return false
	}
	if _, ok := atoi(cp[n+1:]); !ok {
		return false
	}
	p.client(cp[:n], r)
	ts, ok := c.bracketed()
	if !ok {
		return false
	}
	if r.Time, ok = p.haproxyTime(ts); !ok {
		return false
	}
	if _, ok := c.token(); !ok { // frontend
		return false
	}
	if be, ok := c.token(); !ok || bytes.IndexByte(be, '/') < 0 {
		return false
	}
	if tm, ok := c.token(); !ok || bytes.Count(tm, []byte("/")) < 3 {
		return false
	}
	st, ok := c.token()
	if !ok {
		return false
	}
	if len(st) == 2 && st[0] == '-' && st[1] == '1' {
		r.Status = -1
	} else if r.Status, ok = parseStatus(st); !ok {
		return false
	}
	b, ok := c.token()
	if !ok {
		return false
	}
	if r.Bytes, ok = parseBytes(b); !ok {
		return false
	}
	// The request is the first quoted field (after the optional captured
	// headers); "option httpslog" adds fields after it.
	q := bytes.IndexByte(c.rest(), '"')
	if q < 0 {
		return false
	}
	c.i += q
	req, ok := c.quoted()
	if !ok {
		return false
	}
	p.request(req, r)
	return true
}
