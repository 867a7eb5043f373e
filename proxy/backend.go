package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// backend is one BackEnd or Emergency of a service at run time.
type backend struct {
	cfg      *BackendConfig
	id       int    // index within its service (normal backends first)
	key      string // stable name: service/index, used by the control API
	network  string // "tcp" or "unix"
	addr     string
	connTO   time.Duration
	timeout  time.Duration
	tlsConf  *tls.Config
	alive    atomic.Bool
	disabled atomic.Bool
	svc      *service
	log      *slog.Logger
	m        *backendMetrics
	udp      bool

	mu   sync.Mutex
	idle []*bconn
}

// bconn is a connection to a backend.
type bconn struct {
	b      *backend
	ep     endpoint
	reused bool
	idleAt time.Time
}

const (
	maxIdlePerBackend = 256
	maxIdleTime       = 4 * time.Second
	backendBufSize    = 16 << 10
)

var (
	brPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, backendBufSize) }}
	bwPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

func newBackend(cfg *BackendConfig, s *service, id int, g *Config) *backend {
	b := &backend{cfg: cfg, id: id, svc: s, connTO: cfg.ConnTO, timeout: cfg.TimeOut}
	if b.connTO == 0 {
		b.connTO = g.ConnTO
	}
	if b.timeout == 0 {
		b.timeout = g.TimeOut
	}
	if cfg.Unix() {
		b.network, b.addr = "unix", cfg.Address
	} else {
		b.network, b.addr = "tcp", net.JoinHostPort(cfg.Address, strconv.Itoa(cfg.Port))
	}
	if cfg.HTTPS {
		name := cfg.ServerName
		if name == "" {
			name = cfg.Address
		}
		// Pound does not verify backend certificates: the backend is a
		// host the operator named, usually with a self-signed certificate.
		b.tlsConf = &tls.Config{ServerName: name, InsecureSkipVerify: true} //nolint:gosec
	}
	b.alive.Store(true)
	b.disabled.Store(cfg.Disabled)
	return b
}

func (b *backend) String() string { return b.addr }

// usable reports whether the backend may receive new requests.
func (b *backend) usable() bool { return b.alive.Load() && !b.disabled.Load() }

// get returns an idle pooled connection or dials a new one. Requests that
// must not be retried (safe false) take only connections idle for less
// than a second, so they rarely meet one the backend is closing.
func (b *backend) get(ctx context.Context, cc *clientConn, safe bool) (*bconn, error) {
	if b.cfg.ProxyProtocol != 0 {
		// A PROXY header names one client: such connections are reused
		// only by the client connection that opened them.
		if bc := cc.ppConn[b]; bc != nil {
			delete(cc.ppConn, b)
			bc.reused = true
			return bc, nil
		}
		return b.dial(ctx, cc)
	}
	now := time.Now()
	limit := maxIdleTime
	if !safe {
		limit = time.Second
	}
	b.mu.Lock()
	for n := len(b.idle); n > 0; n = len(b.idle) {
		bc := b.idle[n-1]
		b.idle = b.idle[:n-1]
		if now.Sub(bc.idleAt) < limit {
			b.mu.Unlock()
			bc.reused = true
			return bc, nil
		}
		bc.close()
	}
	b.mu.Unlock()
	return b.dial(ctx, cc)
}

// put returns a connection whose last exchange ended cleanly.
func (b *backend) put(bc *bconn, cc *clientConn) {
	if b.cfg.ProxyProtocol != 0 {
		if old := cc.ppConn[b]; old != nil {
			old.close()
		}
		if cc.ppConn == nil {
			cc.ppConn = map[*backend]*bconn{}
		}
		cc.ppConn[b] = bc
		return
	}
	if bc.ep.wdl {
		bc.ep.conn.SetWriteDeadline(time.Time{})
		bc.ep.wdl = false
	}
	bc.idleAt = time.Now()
	b.mu.Lock()
	if len(b.idle) < maxIdlePerBackend && b.alive.Load() {
		b.idle = append(b.idle, bc)
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	bc.close()
}

// closeIdle drops every pooled connection.
func (b *backend) closeIdle() {
	b.mu.Lock()
	idle := b.idle
	b.idle = nil
	b.mu.Unlock()
	for _, bc := range idle {
		bc.close()
	}
}

// dialError is a failure to connect to a backend.
type dialError struct {
	b   *backend
	err error
}

func (e *dialError) Error() string { return fmt.Sprintf("connect to %s: %v", e.b.addr, e.err) }
func (e *dialError) Unwrap() error { return e.err }

func (b *backend) dial(ctx context.Context, cc *clientConn) (*bconn, error) {
	d := net.Dialer{Timeout: b.connTO}
	c, err := d.DialContext(ctx, b.network, b.addr)
	if err != nil {
		return nil, &dialError{b, err}
	}
	bc := &bconn{b: b}
	bc.ep.timeout = b.timeout
	if tc, ok := c.(*net.TCPConn); ok {
		bc.ep.raw = tc
	}
	if b.cfg.ProxyProtocol != 0 && cc != nil {
		h := proxyproto.HeaderProxyFromAddrs(byte(b.cfg.ProxyProtocol), cc.conn.RemoteAddr(), cc.conn.LocalAddr())
		c.SetWriteDeadline(time.Now().Add(b.connTO))
		if _, err := h.WriteTo(c); err != nil {
			c.Close()
			return nil, &dialError{b, fmt.Errorf("send PROXY header: %w", err)}
		}
	}
	if b.tlsConf != nil {
		tc := tls.Client(c, b.tlsConf)
		hctx, cancel := context.WithTimeout(ctx, b.connTO)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			c.Close()
			return nil, &dialError{b, fmt.Errorf("tls handshake: %w", err)}
		}
		c = tc
		bc.ep.raw = nil
	}
	c.SetDeadline(time.Time{})
	bc.ep.conn = c
	br := brPool.Get().(*bufio.Reader)
	br.Reset(c)
	bw := bwPool.Get().(*bufio.Writer)
	bw.Reset(c)
	bc.ep.br, bc.ep.bw = br, bw
	b.m.conns.Inc()
	return bc, nil
}

func (bc *bconn) close() {
	if bc.ep.conn == nil {
		return
	}
	bc.ep.conn.Close()
	bc.ep.conn = nil
	bc.ep.br.Reset(nil)
	brPool.Put(bc.ep.br)
	bc.ep.bw.Reset(nil)
	bwPool.Put(bc.ep.bw)
}

// setAlive changes the health state, logging transitions.
func (b *backend) setAlive(up bool, reason string) {
	if b.alive.Swap(up) == up {
		return
	}
	if up {
		b.log.Warn("backend is alive again", "backend", b.addr, "service", b.svc.name)
		b.m.up.Set(1)
	} else {
		b.log.Warn("backend is dead", "backend", b.addr, "service", b.svc.name, "reason", reason)
		b.m.up.Set(0)
		b.closeIdle()
	}
}

// probe checks a backend by connecting to it.
func (b *backend) probe(ctx context.Context) error {
	if b.udp {
		return b.probeUDP(ctx)
	}
	if b.cfg.Redirect != "" {
		return nil
	}
	addr := b.addr
	if b.cfg.HAPort != 0 && b.network == "tcp" {
		addr = net.JoinHostPort(b.cfg.Address, strconv.Itoa(b.cfg.HAPort))
	}
	d := net.Dialer{Timeout: b.connTO}
	c, err := d.DialContext(ctx, b.network, addr)
	if err != nil {
		return err
	}
	return c.Close()
}
