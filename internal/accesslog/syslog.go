package accesslog

import (
	"bytes"
	"time"
)

// syslogPrefix strips an optional syslog header from line:
//
//	<134>Nov 21 10:00:00 host pound: MSG
//	<134>1 2026-11-21T10:00:00.123Z host haproxy 123 - - MSG   (RFC 5424)
//	Nov 21 10:00:00 host haproxy[123]: MSG
//	2026-11-21T10:00:00.123456+00:00 host pound[77]: MSG
//
// It returns the message, the header's time (zero if none) and the program
// name from the tag ("pound", "haproxy"; nil if none). Without a header the
// line comes back unchanged.
func (p *Parser) syslogPrefix(line []byte) (msg []byte, t time.Time, tag []byte) {
	b := line
	if len(b) > 2 && b[0] == '<' {
		n := bytes.IndexByte(b[:min(len(b), 6)], '>')
		if n < 2 {
			return line, time.Time{}, nil
		}
		if _, ok := digits(b[1:n]); !ok {
			return line, time.Time{}, nil
		}
		b = b[n+1:]
	}
	if len(b) > 2 && b[0] == '1' && b[1] == ' ' && len(b) < len(line) {
		return p.rfc5424(line, b[2:])
	}
	if len(b) < 16 {
		return line, time.Time{}, nil
	}
	var rest []byte
	var ok bool
	switch {
	case b[3] == ' ' && b[0] >= 'A' && b[0] <= 'Z':
		if t, ok = p.bsdTime(b[:15]); !ok || b[15] != ' ' {
			return line, time.Time{}, nil
		}
		rest = b[16:]
	case b[4] == '-' && b[0] >= '0' && b[0] <= '9':
		sp := bytes.IndexByte(b, ' ')
		if sp < 0 {
			return line, time.Time{}, nil
		}
		if t, ok = p.isoTime(b[:sp]); !ok {
			return line, time.Time{}, nil
		}
		rest = b[sp+1:]
	default:
		return line, time.Time{}, nil
	}
	// host, then "tag:" or "tag[pid]:".
	c := cursor{b: rest}
	if _, ok := c.token(); !ok {
		return line, time.Time{}, nil
	}
	tagTok, ok := c.token()
	if !ok || tagTok[len(tagTok)-1] != ':' {
		return line, time.Time{}, nil
	}
	tag = tagTok[:len(tagTok)-1]
	if n := bytes.IndexByte(tag, '['); n >= 0 {
		tag = tag[:n]
	}
	return c.rest(), t, tag
}

// rfc5424 parses the rest of an RFC 5424 header after "<PRI>1 ":
// TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG, where the
// structured data is "-" (anything else is not an access log line).
func (p *Parser) rfc5424(line, b []byte) ([]byte, time.Time, []byte) {
	c := cursor{b: b}
	ts, ok := c.token()
	if !ok {
		return line, time.Time{}, nil
	}
	var t time.Time
	if string(ts) != "-" {
		if t, ok = p.isoTime(ts); !ok {
			return line, time.Time{}, nil
		}
	}
	var app []byte
	for i := 0; i < 4; i++ { // host, app, procid, msgid
		tok, ok := c.token()
		if !ok {
			return line, time.Time{}, nil
		}
		if i == 1 {
			app = tok
		}
	}
	if !c.literal("- ") && !c.literal("-") {
		return line, time.Time{}, nil
	}
	return c.rest(), t, app
}
