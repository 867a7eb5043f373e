package proxy

import (
	"bufio"
	"io"
	"strconv"
	"sync"
	"time"
)

// accessLog writes one line per request, buffered and flushed every
// second and at close.
type accessLog struct {
	mu   sync.Mutex
	w    *bufio.Writer
	stop chan struct{}
	once sync.Once
}

func newAccessLog(w io.Writer) *accessLog {
	a := &accessLog{w: bufio.NewWriterSize(w, 32<<10), stop: make(chan struct{})}
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				a.flush()
			case <-a.stop:
				return
			}
		}
	}()
	return a
}

func (a *accessLog) write(b []byte) {
	a.mu.Lock()
	a.w.Write(b)
	a.mu.Unlock()
}

func (a *accessLog) flush() {
	a.mu.Lock()
	a.w.Flush()
	a.mu.Unlock()
}

func (a *accessLog) close() {
	a.once.Do(func() { close(a.stop); a.flush() })
}

// logRequest writes the access log line in the listener's LogLevel:
// 1 regular, 2 extended, 3 vhost_combined, 4 combined, 5 detailed.
func (cc *clientConn) logRequest(svc *service, b *backend, status int, n int64, start time.Time) {
	l := cc.l
	if l.srv.alog == nil || l.logLevel == 0 {
		return
	}
	e := logEntry{svc: "-", backend: "-", status: status, n: n, start: start, elapsed: time.Since(start).Seconds()}
	if svc != nil {
		e.svc = svc.name
	}
	switch {
	case b == nil:
		e.reason = []byte(statusText(status))
	case b.cfg.Redirect != "":
		e.backend = b.cfg.Redirect
		e.reason = []byte(redirectText(status))
	default:
		e.backend = b.addr
		e.reason = cc.resp.bytes(cc.resp.reason)
	}
	buf := cc.out[:0]
	if l.logLevel <= 2 {
		buf = cc.appendPoundLine(buf, &e)
	} else {
		buf = cc.appendCombinedLine(buf, &e)
	}
	buf = append(buf, '\n')
	cc.out = buf
	l.srv.alog.write(buf)
}

type logEntry struct {
	svc, backend string
	reason       []byte
	status       int
	n            int64
	start        time.Time
	elapsed      float64
}

func (cc *clientConn) appendRequestLine(buf []byte) []byte {
	req := &cc.req
	buf = appendEscaped(buf, req.bytes(req.method))
	buf = append(buf, ' ')
	buf = appendEscaped(buf, req.bytes(req.target))
	buf = append(buf, " HTTP/1."...)
	return strconv.AppendInt(buf, int64(req.minor), 10)
}

// appendPoundLine is Pound's own format: LogLevel 1, and 2 with the
// service, backend and time.
func (cc *clientConn) appendPoundLine(buf []byte, e *logEntry) []byte {
	buf = append(buf, cc.addrStr...)
	buf = append(buf, ' ')
	buf = cc.appendRequestLine(buf)
	buf = append(buf, " - HTTP/1.1 "...)
	buf = strconv.AppendInt(buf, int64(e.status), 10)
	buf = append(buf, ' ')
	buf = append(buf, e.reason...)
	if cc.l.logLevel == 2 {
		buf = append(buf, " ("...)
		buf = appendEscaped(buf, cc.req.bytes(cc.req.host))
		buf = append(buf, '/')
		buf = append(buf, e.svc...)
		buf = append(buf, " -> "...)
		buf = append(buf, e.backend...)
		buf = append(buf, ") "...)
		buf = strconv.AppendFloat(buf, e.elapsed, 'f', 3, 64)
		buf = append(buf, " sec"...)
	}
	return buf
}

// appendCombinedLine is Apache's combined format (LogLevel 4), with the
// Host header first (3, 5) and the service, backend and time after (5),
// as Pound writes them.
func (cc *clientConn) appendCombinedLine(buf []byte, e *logEntry) []byte {
	req := &cc.req
	quoted := func(name string) {
		buf = append(buf, '"')
		if v, ok := req.get(name); ok {
			buf = appendEscaped(buf, v)
		}
		buf = append(buf, '"')
	}
	if cc.l.logLevel == 3 || cc.l.logLevel == 5 {
		h := req.bytes(req.host)
		if len(h) == 0 {
			h = []byte("-")
		}
		buf = appendEscaped(buf, h)
		buf = append(buf, ' ')
	}
	buf = append(buf, cc.addrStr...)
	buf = append(buf, " - "...)
	buf = append(buf, basicUser(req)...)
	buf = append(buf, " ["...)
	buf = e.start.AppendFormat(buf, "02/Jan/2006:15:04:05 -0700")
	buf = append(buf, "] \""...)
	buf = cc.appendRequestLine(buf)
	buf = append(buf, "\" "...)
	buf = strconv.AppendInt(buf, int64(e.status), 10)
	buf = append(buf, ' ')
	if e.n > 0 {
		buf = strconv.AppendInt(buf, e.n, 10)
	} else {
		buf = append(buf, '-')
	}
	buf = append(buf, ' ')
	quoted("referer")
	buf = append(buf, ' ')
	quoted("user-agent")
	if cc.l.logLevel == 5 {
		buf = append(buf, " ("...)
		buf = append(buf, e.svc...)
		buf = append(buf, " -> "...)
		buf = append(buf, e.backend...)
		buf = append(buf, ") "...)
		buf = strconv.AppendFloat(buf, e.elapsed, 'f', 3, 64)
		buf = append(buf, " sec"...)
	}
	return buf
}

// basicUser returns the user of Basic authorization, or "-".
func basicUser(req *msgHead) string {
	v, ok := req.get("authorization")
	if !ok || len(v) < 7 || !equalFoldASCII(v[:6], "basic ") {
		return "-"
	}
	dec, err := decodeBase64(v[6:])
	if err != nil {
		return "-"
	}
	user, _, _ := cutColon(string(dec))
	if user == "" {
		return "-"
	}
	return string(appendEscaped(nil, []byte(user)))
}

// appendEscaped appends v with quotes, backslashes and control bytes
// escaped, so a log line cannot be forged.
func appendEscaped(buf, v []byte) []byte {
	const hex = "0123456789abcdef"
	for _, c := range v {
		switch {
		case c == '"' || c == '\\':
			buf = append(buf, '\\', c)
		case c < 0x20 || c == 0x7f:
			buf = append(buf, '\\', 'x', hex[c>>4], hex[c&15])
		default:
			buf = append(buf, c)
		}
	}
	return buf
}
