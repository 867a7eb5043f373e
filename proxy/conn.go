package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// clientConn is one client connection to an HTTP listener.
type clientConn struct {
	l       *httpListener
	conn    net.Conn
	ep      endpoint
	addr    netip.Addr
	addrStr string
	trusted bool
	req     msgHead
	resp    msgHead
	scratch []byte
	ppConn  map[*backend]*bconn
	idle    atomic.Bool
	out     []byte // response head being built
}

var (
	cbrPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, clientBufSize) }}
	cbwPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 8<<10) }}
	ccPool  = sync.Pool{New: func() any { return &clientConn{} }}
)

func (l *httpListener) newClientConn(c net.Conn) *clientConn {
	cc := ccPool.Get().(*clientConn)
	cc.l, cc.conn = l, c
	cc.ep = endpoint{conn: c, timeout: l.timeout, client: true}
	if tc, ok := c.(*net.TCPConn); ok {
		cc.ep.raw = tc
	}
	cc.ep.br = cbrPool.Get().(*bufio.Reader)
	cc.ep.br.Reset(c)
	cc.ep.bw = cbwPool.Get().(*bufio.Writer)
	cc.ep.bw.Reset(c)
	cc.addr, cc.addrStr = netip.Addr{}, ""
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		cc.addr = ap.Addr().Unmap()
		cc.addrStr = cc.addr.String()
	}
	cc.trusted = false
	for _, p := range l.trusted {
		if p.Contains(cc.addr) {
			cc.trusted = true
			break
		}
	}
	return cc
}

func (cc *clientConn) release() {
	for _, bc := range cc.ppConn {
		bc.close()
	}
	clear(cc.ppConn)
	cc.conn.Close()
	cc.ep.br.Reset(nil)
	cbrPool.Put(cc.ep.br)
	cc.ep.bw.Reset(nil)
	cbwPool.Put(cc.ep.bw)
	cc.ep, cc.l, cc.conn = endpoint{}, nil, nil
	ccPool.Put(cc)
}

// serve reads requests until the client goes away or must be closed.
func (cc *clientConn) serve(ctx context.Context) {
	l := cc.l
	defer cc.release()
	if tc, ok := cc.conn.(interface{ HandshakeContext(context.Context) error }); ok {
		cc.conn.SetDeadline(time.Now().Add(l.client))
		if err := tc.HandshakeContext(ctx); err != nil {
			return
		}
	}
	for {
		cc.idle.Store(true)
		if l.srv.draining.Load() {
			return
		}
		cc.conn.SetReadDeadline(time.Now().Add(l.client))
		err := cc.req.readRequest(cc.ep.br)
		cc.idle.Store(false)
		if err != nil {
			var he *httpError
			if errors.As(err, &he) {
				cc.writeError(he.Status, nil, time.Now())
			}
			return
		}
		if !cc.handle(ctx) || l.srv.draining.Load() {
			cc.ep.bw.Flush()
			return
		}
		if cc.ep.br.Buffered() == 0 {
			if err := cc.ep.bw.Flush(); err != nil {
				return
			}
		}
	}
}

var errNoBackend = errors.New("no backend available")

// handle forwards the request in cc.req and reports whether the client
// connection can carry another request.
func (cc *clientConn) handle(ctx context.Context) bool {
	l, req := cc.l, &cc.req
	start := time.Now()
	if !l.methodAllowed(req.bytes(req.method)) {
		return cc.writeError(501, nil, start)
	}
	if l.cfg.MaxRequest > 0 && req.contentLength > l.cfg.MaxRequest {
		return cc.writeError(413, nil, start)
	}
	svc := l.selectService(req, &cc.scratch)
	if svc == nil {
		return cc.writeError(503, nil, start)
	}
	l.srv.m.inflight.Inc()
	defer l.srv.m.inflight.Dec()
	cc.conn.SetWriteDeadline(start.Add(l.timeout + l.client))
	return cc.forward(ctx, svc, start)
}

// forward sends the request to a backend of svc. At most backends + 2
// attempts: a connect failure of an idempotent request goes to another
// backend, and a backend that closed before answering an idempotent
// request without a body gets one fresh connection. Nothing else retries.
func (cc *clientConn) forward(ctx context.Context, svc *service, start time.Time) bool {
	req := &cc.req
	var tried uint64
	idem := idempotent(req.bytes(req.method))
	hasBody := req.contentLength > 0 || req.chunked
	maxAttempts := len(svc.backends) + len(svc.emergency) + 2
	fresh := false
	for attempt := 0; ; attempt++ {
		b, skey := svc.pick(req, cc.addr, tried)
		if b == nil {
			return cc.writeError(503, svc, start)
		}
		if b.cfg.Redirect != "" {
			return cc.writeRedirect(b, svc, start)
		}
		var bc *bconn
		var err error
		if fresh {
			bc, err = b.dial(ctx, cc)
			fresh = false
		} else {
			bc, err = b.get(ctx, cc, idem && !hasBody)
		}
		if err != nil {
			if ctx.Err() != nil {
				return false
			}
			b.m.failures.Inc()
			b.setAlive(false, err.Error())
			tried |= 1 << uint(b.id%64)
			if idem && attempt < maxAttempts {
				continue
			}
			return cc.writeError(503, svc, start)
		}
		keep, err := cc.exchange(b, bc, svc, skey, start)
		if errors.Is(err, errStale) && idem && !hasBody && attempt < maxAttempts {
			// A pooled connection the backend had dropped, or a backend
			// going down: if the fresh connection fails to connect, the
			// backend is marked dead and another is tried.
			b.closeIdle()
			fresh = true
			continue
		}
		if errors.Is(err, errStale) {
			return cc.writeError(502, svc, start)
		}
		return keep
	}
}

func idempotent(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", "PROPFIND", "SEARCH", "REPORT":
		return true
	}
	return false
}

// errStale is a backend connection that closed before any byte of
// the response arrived.
var errStale = errors.New("stale backend connection")

// exchange sends the request over bc and relays the response.
func (cc *clientConn) exchange(b *backend, bc *bconn, svc *service, skey string, start time.Time) (bool, error) {
	req := &cc.req
	cc.writeRequestHead(bc.ep.bw, b)
	sentBody := !req.expect100 || req.contentLength == 0
	if !sentBody {
		if err := bc.ep.bw.Flush(); err != nil {
			bc.close()
			return cc.backendFailed(b, svc, bc, err, start), errStaleIf(bc, err)
		}
	} else if err := cc.sendBody(bc); err != nil {
		return cc.bodyFailed(b, svc, bc, err, start)
	}
	if keep, ok, err := cc.awaitResponse(b, bc, svc, start, &sentBody); !ok {
		return keep, err
	}
	if cc.resp.status == 101 {
		return cc.upgrade(b, bc, svc, skey, start), nil
	}
	return cc.relayResponse(b, bc, svc, skey, start, sentBody), nil
}

// awaitResponse reads the response head, relaying 1xx responses and
// sending a withheld body after 100 Continue. ok is false when the
// exchange ended here, with exchange's results in keep and err.
func (cc *clientConn) awaitResponse(b *backend, bc *bconn, svc *service, start time.Time, sentBody *bool) (keep, ok bool, err error) {
	resp := &cc.resp
	for {
		bc.ep.conn.SetReadDeadline(time.Now().Add(b.timeout))
		if err := resp.readResponse(bc.ep.br); err != nil {
			bc.close()
			if isTimeout(err) {
				b.m.failures.Inc()
				b.setAlive(false, "response timeout")
				return cc.writeError(504, svc, start), false, nil
			}
			if len(resp.buf) == 0 && (err == io.EOF || errors.Is(err, syscall.ECONNRESET)) {
				// Closed before any byte of the response: nothing reached
				// the client, so an idempotent request may go elsewhere.
				return false, false, errStale
			}
			return cc.writeError(502, svc, start), false, nil
		}
		if resp.status >= 200 || resp.status == 101 {
			return false, true, nil
		}
		cc.writeInterim()
		if err := cc.ep.bw.Flush(); err != nil {
			bc.close()
			return false, false, nil
		}
		if resp.status == 100 && !*sentBody {
			if err := cc.sendBody(bc); err != nil {
				keep, err := cc.bodyFailed(b, svc, bc, err, start)
				return keep, false, err
			}
			*sentBody = true
		}
	}
}

// upgrade completes a 101 Switching Protocols and splices the connections.
func (cc *clientConn) upgrade(b *backend, bc *bconn, svc *service, skey string, start time.Time) bool {
	if !cc.req.connUpgrade {
		bc.close()
		return cc.writeError(502, svc, start)
	}
	cc.writeResponseHead(b, svc, skey, true, false)
	cc.logRequest(svc, b, 101, 0, start)
	b.m.count(101)
	cc.tunnel(bc)
	return false
}

func errStaleIf(bc *bconn, err error) error {
	if bc.reused {
		return errStale
	}
	return err
}

// sendBody streams the request body, if any, to the backend.
func (cc *clientConn) sendBody(bc *bconn) error {
	req := &cc.req
	var n int64
	var err error
	switch {
	case req.contentLength > 0:
		n, err = copyN(&bc.ep, &cc.ep, req.contentLength)
	case req.chunked:
		n, err = copyChunked(&bc.ep, &cc.ep, false, cc.l.cfg.MaxRequest)
	}
	if n > 0 {
		cc.l.srv.m.bytesIn.Add(float64(n))
	}
	if err != nil {
		return err
	}
	if err := bc.ep.bw.Flush(); err != nil {
		return &sideError{client: false, err: err}
	}
	return nil
}

// bodyFailed handles a failure while sending the request.
func (cc *clientConn) bodyFailed(b *backend, svc *service, bc *bconn, err error, start time.Time) (bool, error) {
	bc.close()
	var se *sideError
	if errors.As(err, &se) && se.client {
		if errors.Is(err, errBadChunk) {
			return cc.writeError(400, svc, start), nil
		}
		if errors.Is(err, errTooLarge) {
			return cc.writeError(413, svc, start), nil
		}
		return false, nil // the client went away: not the backend's fault
	}
	if cc.req.contentLength <= 0 && !cc.req.chunked {
		return false, errStale
	}
	return cc.writeError(502, svc, start), nil
}

func (cc *clientConn) backendFailed(b *backend, svc *service, bc *bconn, err error, start time.Time) bool {
	if bc.reused {
		return false
	}
	return cc.writeError(502, svc, start)
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// relayResponse writes the response head and body to the client.
func (cc *clientConn) relayResponse(b *backend, bc *bconn, svc *service, skey string, start time.Time, sentBody bool) bool {
	req, resp := &cc.req, &cc.resp
	noBody := string(req.bytes(req.method)) == "HEAD" || resp.status == 204 || resp.status == 304
	clientKeep := req.keepAlive() && sentBody && !cc.l.srv.draining.Load()
	backendKeep := resp.keepAlive() && sentBody
	chunkOut := false
	switch {
	case noBody:
	case resp.chunked:
		if req.minor >= 1 {
			chunkOut = true
		} else {
			clientKeep = false
		}
	case resp.contentLength >= 0:
	default:
		clientKeep, backendKeep = false, false
	}
	cc.writeResponseHead(b, svc, skey, clientKeep, chunkOut)
	if svc.sess != nil {
		svc.sess.learn(resp, b)
	}
	var n int64
	var err error
	if !noBody {
		switch {
		case resp.chunked:
			n, err = copyChunked(&cc.ep, &bc.ep, !chunkOut, 0)
		case resp.contentLength >= 0:
			n, err = copyN(&cc.ep, &bc.ep, resp.contentLength)
		default:
			n, err = copyUntilEOF(&cc.ep, &bc.ep)
		}
	}
	cc.l.srv.m.bytesOut.Add(float64(n))
	b.m.count(resp.status)
	svc.m.duration.Observe(time.Since(start).Seconds())
	cc.logRequest(svc, b, resp.status, n, start)
	if err != nil {
		bc.close()
		return false
	}
	if backendKeep {
		b.put(bc, cc)
	} else {
		bc.close()
	}
	return clientKeep
}

// tunnel splices the client and backend connections after 101.
func (cc *clientConn) tunnel(bc *bconn) {
	if err := cc.ep.bw.Flush(); err != nil {
		bc.close()
		return
	}
	cc.conn.SetDeadline(time.Time{})
	bc.ep.conn.SetDeadline(time.Time{})
	done := make(chan struct{})
	go func() {
		io.Copy(bc.ep.conn, cc.ep.br)
		closeWrite(bc.ep.conn)
		close(done)
	}()
	io.Copy(cc.conn, bc.ep.br)
	closeWrite(cc.conn)
	<-done
	bc.close()
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

// writeError sends a response generated by the proxy and reports whether
// the connection may go on (never: the request body may be unread).
func (cc *clientConn) writeError(status int, svc *service, start time.Time) bool {
	body := cc.l.errPages[status]
	if body == nil {
		body = []byte("<html><head><title>" + strconv.Itoa(status) + " " + statusText(status) +
			"</title></head><body><h1>" + statusText(status) + "</h1></body></html>\n")
	}
	w := cc.ep.bw
	w.WriteString("HTTP/1.1 ")
	w.WriteString(strconv.Itoa(status))
	w.WriteByte(' ')
	w.WriteString(statusText(status))
	w.WriteString("\r\nContent-Type: text/html\r\nContent-Length: ")
	w.WriteString(strconv.Itoa(len(body)))
	w.WriteString("\r\nConnection: close\r\n\r\n")
	if cc.req.bytes(cc.req.method) == nil || string(cc.req.bytes(cc.req.method)) != "HEAD" {
		w.Write(body)
	}
	w.Flush()
	cc.l.srv.m.errors.WithLabelValues(strconv.Itoa(status)).Inc()
	cc.logRequest(svc, nil, status, int64(len(body)), start)
	return false
}

// writeRedirect answers for a Redirect backend: the URL's path replaces
// nothing when it has one, else the request's path is appended (Pound).
func (cc *clientConn) writeRedirect(b *backend, svc *service, start time.Time) bool {
	loc := b.cfg.Redirect
	if u, err := url.Parse(loc); err == nil && (u.Path == "" || u.Path == "/") {
		loc = strings.TrimSuffix(loc, "/") + string(cc.req.bytes(cc.req.target))
	}
	w := cc.ep.bw
	w.WriteString("HTTP/1.1 ")
	w.WriteString(strconv.Itoa(b.cfg.RedirectCode))
	w.WriteString(" ")
	w.WriteString(redirectText(b.cfg.RedirectCode))
	w.WriteString("\r\nLocation: ")
	w.WriteString(loc)
	w.WriteString("\r\nContent-Length: 0\r\n")
	keep := cc.req.keepAlive() && cc.req.contentLength <= 0 && !cc.req.chunked
	if !keep {
		w.WriteString("Connection: close\r\n")
	}
	w.WriteString("\r\n")
	b.m.count(b.cfg.RedirectCode)
	cc.logRequest(svc, b, b.cfg.RedirectCode, 0, start)
	return keep
}

func redirectText(code int) string {
	switch code {
	case 301:
		return "Moved Permanently"
	case 307:
		return "Temporary Redirect"
	}
	return "Found"
}

func statusText(code int) string {
	switch code {
	case 400:
		return "Bad Request"
	case 413:
		return "Request Entity Too Large"
	case 414:
		return "Request-URI Too Long"
	case 431:
		return "Request Header Fields Too Large"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	}
	return "Error"
}
