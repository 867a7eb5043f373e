package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/migrate-tool/migrate/internal/hint"
)

// Options are what a Server needs beyond its configuration.
type Options struct {
	Logger    *slog.Logger // diagnostics (backend state, reloads); nil discards
	AccessLog io.Writer    // access log lines; nil disables the log
	Metrics   *Metrics     // nil creates a fresh set
	// Inherited are listening sockets opened elsewhere (a socket taken
	// over from the service being replaced), by "ADDR:PORT" as the
	// configuration names it; a listener at that address uses the socket
	// instead of binding its own.
	Inherited map[string]net.Listener
	// InheritedPacket are UDP sockets opened elsewhere, like Inherited.
	InheritedPacket map[string]net.PacketConn
}

// Server runs a configuration: listeners, health checks, the control
// socket and the metrics listener. Reload swaps in a new configuration
// while keeping the sockets that did not change.
type Server struct {
	opts  Options
	m     *Metrics
	log   *slog.Logger
	alog  *accessLog
	ctx   context.Context
	stop  context.CancelFunc
	mu    sync.Mutex
	cur   *instance
	socks map[string]*sock
	ctl   *controlServer
	mln   net.Listener
	wg    sync.WaitGroup
}

// instance is one loaded configuration.
type instance struct {
	cfg       *Config
	m         *Metrics
	log       *slog.Logger
	alog      *accessLog
	services  []*service
	http      []*httpListener
	tcp       []*tcpListener
	udp       []*udpListener
	draining  atomic.Bool
	connMu    sync.Mutex
	conns     map[net.Conn]*atomic.Bool
	connWG    sync.WaitGroup
	cancel    context.CancelFunc
	svcByName map[string]*service
}

// NewServer checks cfg and prepares a Server; Start opens its sockets.
func NewServer(cfg *Config, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics()
	}
	s := &Server{opts: opts, m: opts.Metrics, log: opts.Logger, socks: map[string]*sock{}}
	if opts.AccessLog != nil {
		s.alog = newAccessLog(opts.AccessLog)
	}
	s.cur = s.build(cfg)
	return s, nil
}

// Metrics returns the server's metrics.
func (s *Server) Metrics() *Metrics { return s.m }

func (s *Server) build(cfg *Config) *instance {
	in := &instance{cfg: cfg, m: s.m, log: s.log, alog: s.alog, conns: map[net.Conn]*atomic.Bool{}, svcByName: map[string]*service{}}
	var global []*service
	for _, sc := range cfg.Services {
		global = append(global, in.newService(sc))
	}
	for _, lc := range cfg.Listeners {
		switch lc.Kind {
		case KindHTTP, KindHTTPS:
			in.http = append(in.http, in.newHTTPListener(lc, global))
		case KindTCP:
			in.tcp = append(in.tcp, in.newTCPListener(lc))
		case KindUDP:
			in.udp = append(in.udp, in.newUDPListener(lc))
		}
	}
	return in
}

func (in *instance) newService(sc *ServiceConfig) *service {
	name := sc.Name
	if name == "" {
		name = "service" + strconv.Itoa(len(in.services)+1)
	}
	for in.svcByName[name] != nil {
		name += "'"
	}
	s := &service{cfg: sc, name: name, m: in.m.forService(name)}
	if sc.Session != nil {
		s.sess = newSessionTable(sc.Session)
	}
	for i, bc := range append(append([]*BackendConfig{}, sc.Backends...), sc.Emergency...) {
		b := newBackend(bc, s, i, in.cfg)
		b.key = name + "/" + strconv.Itoa(i)
		b.log = in.log
		b.m = in.m.forBackend(name, b.addr)
		if bc.Emergency {
			s.emergency = append(s.emergency, b)
		} else {
			s.backends = append(s.backends, b)
		}
	}
	s.iwrr = iwrrSchedule(s.backends)
	s.byKey = map[string]*backend{}
	for _, b := range s.all() {
		s.byKey[b.key] = b
	}
	in.services = append(in.services, s)
	in.svcByName[name] = s
	return s
}

// Start opens every socket of the configuration and starts serving.
func (s *Server) Start(ctx context.Context) error {
	s.ctx, s.stop = context.WithCancel(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.bind(s.cur); err != nil {
		s.closeSocks(nil)
		return err
	}
	s.activate(s.cur)
	if err := s.startSide(s.cur.cfg); err != nil {
		s.closeSocks(nil)
		return err
	}
	return nil
}

// bind opens the sockets in.cfg needs that are not open yet.
func (s *Server) bind(in *instance) error {
	for _, lc := range in.cfg.Listeners {
		key := sockKey(lc)
		if s.socks[key] != nil {
			continue
		}
		addr := net.JoinHostPort(lc.Address, strconv.Itoa(lc.Port))
		sk := &sock{key: key, done: make(chan struct{})}
		var err error
		switch {
		case lc.Kind != KindUDP && s.opts.Inherited[addr] != nil:
			sk.ln = s.opts.Inherited[addr]
		case lc.Kind == KindUDP && s.opts.InheritedPacket[addr] != nil:
			sk.pc = s.opts.InheritedPacket[addr]
		case lc.Kind == KindUDP:
			sk.pc, err = net.ListenPacket("udp", addr)
		default:
			sk.ln, err = net.Listen("tcp", addr)
		}
		if err != nil {
			return hint.With(fmt.Errorf("listen %s (%s:%d.%d): %w", addr, lc.Pos.File, lc.Pos.Line, lc.Pos.Col, err),
				"another server may hold the port; stop it or change Address/Port")
		}
		s.socks[key] = sk
	}
	return nil
}

// activate points every socket at in's handlers, closes sockets in no
// longer uses, and starts its health checks.
func (s *Server) activate(in *instance) {
	used := map[string]bool{}
	for _, l := range in.http {
		s.setHandler(sockKey(l.cfg), &handlerRef{http: l})
		used[sockKey(l.cfg)] = true
	}
	for _, l := range in.tcp {
		s.setHandler(sockKey(l.cfg), &handlerRef{tcp: l})
		used[sockKey(l.cfg)] = true
	}
	for _, l := range in.udp {
		s.setHandler(sockKey(l.cfg), &handlerRef{udp: l})
		used[sockKey(l.cfg)] = true
	}
	s.closeSocks(used)
	hctx, cancel := context.WithCancel(s.ctx)
	in.cancel = cancel
	go in.healthLoop(hctx)
}

func (s *Server) setHandler(key string, h *handlerRef) {
	sk := s.socks[key]
	first := sk.handler.Load() == nil
	sk.handler.Store(h)
	if !first {
		return
	}
	if sk.ln != nil {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); sk.acceptLoop(s.ctx) }()
	} else {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); sk.packetLoop(s.ctx) }()
	}
}

// closeSocks closes the sockets not in keep (all when keep is nil).
func (s *Server) closeSocks(keep map[string]bool) {
	for k, sk := range s.socks {
		if keep != nil && keep[k] {
			continue
		}
		if sk.ln != nil {
			sk.ln.Close()
		}
		if sk.pc != nil {
			sk.pc.Close()
		}
		delete(s.socks, k)
	}
}

// Reload replaces the running configuration with cfg. Connections of the
// old configuration finish their current request and close.
func (s *Server) Reload(cfg *Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.build(cfg)
	if err := s.bind(next); err != nil {
		return err
	}
	old := s.cur
	s.activate(next)
	s.cur = next
	if err := s.restartSide(old.cfg, cfg); err != nil {
		s.log.Warn("reload: control or metrics socket", "err", err)
	}
	go old.drain(cfg.Grace)
	s.log.Info("configuration reloaded", "file", cfg.File)
	return nil
}

// Shutdown stops accepting, lets requests in flight finish within the
// Grace period (or until ctx ends), then closes everything.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	cur := s.cur
	s.closeSocks(nil)
	s.stopSide()
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { cur.drain(cur.cfg.Grace); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		cur.closeAll()
		err = ctx.Err()
	}
	if s.stop != nil {
		s.stop()
	}
	if s.alog != nil {
		s.alog.close()
	}
	return err
}

func (in *instance) track(c net.Conn, idle *atomic.Bool) bool {
	in.connMu.Lock()
	defer in.connMu.Unlock()
	if in.draining.Load() {
		return false
	}
	in.conns[c] = idle
	in.connWG.Add(1)
	return true
}

func (in *instance) untrack(c net.Conn) {
	in.connMu.Lock()
	delete(in.conns, c)
	in.connMu.Unlock()
	in.connWG.Done()
}

// drain makes idle connections close at once and busy ones after their
// request; after grace every connection is closed.
func (in *instance) drain(grace time.Duration) {
	in.draining.Store(true)
	if in.cancel != nil {
		in.cancel()
	}
	in.connMu.Lock()
	for c, idle := range in.conns {
		if idle == nil || idle.Load() {
			c.SetReadDeadline(time.Now())
		}
	}
	in.connMu.Unlock()
	done := make(chan struct{})
	go func() { in.connWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		in.closeAll()
		<-done
	}
	for _, s := range in.services {
		for _, b := range s.all() {
			b.closeIdle()
		}
	}
}

func (in *instance) closeAll() {
	in.connMu.Lock()
	for c := range in.conns {
		c.Close()
	}
	in.connMu.Unlock()
}

// healthLoop probes every backend each Alive period: dead ones that
// answer come back, alive ones that do not are taken out.
func (in *instance) healthLoop(ctx context.Context) {
	t := time.NewTicker(in.cfg.Alive)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			in.checkAll(ctx)
			for _, s := range in.services {
				if s.sess != nil {
					s.sess.expire(now)
				}
			}
		}
	}
}

func (in *instance) checkAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range in.services {
		for _, b := range s.all() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := b.probe(ctx)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					if b.alive.Load() {
						b.m.failures.Inc()
					}
					b.setAlive(false, "health check: "+err.Error())
				} else {
					b.setAlive(true, "")
				}
			}()
		}
	}
	wg.Wait()
}

// ListenerAddrs returns the bound address of every listener, in
// configuration order (useful with port 0).
func (s *Server) ListenerAddrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []net.Addr
	for _, lc := range s.cur.cfg.Listeners {
		sk := s.socks[sockKey(lc)]
		switch {
		case sk == nil:
			out = append(out, nil)
		case sk.ln != nil:
			out = append(out, sk.ln.Addr())
		default:
			out = append(out, sk.pc.LocalAddr())
		}
	}
	return out
}

// WritePIDFile writes the process id to path (temp file and rename).
func WritePIDFile(path string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write pid file: %w", err)
	}
	return nil
}
