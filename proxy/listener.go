package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"
)

// httpListener is a ListenHTTP or ListenHTTPS at run time.
type httpListener struct {
	cfg          *ListenerConfig
	srv          *instance
	name         string
	scheme       string
	services     []*service
	client       time.Duration
	timeout      time.Duration
	trusted      []netip.Prefix
	errPages     map[int][]byte
	extraHeaders []byte   // AddHeader and SetHeader lines, preformatted
	setNames     [][]byte // names replaced by SetHeader
	methods      map[string]bool
	tlsConf      *tls.Config
	logLevel     int
	clients      prometheus.Gauge
}

var xhttpMethods = [][]string{
	{"GET", "POST", "HEAD"},
	{"PUT", "PATCH", "DELETE"},
	{"LOCK", "UNLOCK", "PROPFIND", "PROPPATCH", "SEARCH", "MKCOL", "MOVE", "COPY", "OPTIONS", "TRACE", "MKACTIVITY", "CHECKOUT", "MERGE", "REPORT"},
	{"SUBSCRIBE", "UNSUBSCRIBE", "NOTIFY", "BPROPFIND", "BPROPPATCH", "POLL", "BMOVE", "BCOPY", "BDELETE"},
}

func (l *httpListener) methodAllowed(m []byte) bool {
	return l.methods[string(m)]
}

func (l *httpListener) selectService(req *msgHead, scratch *[]byte) *service {
	for _, s := range l.services {
		if s.matches(req, scratch) {
			return s
		}
	}
	return nil
}

func (srv *instance) newHTTPListener(lc *ListenerConfig, global []*service) *httpListener {
	cfg := srv.cfg
	l := &httpListener{cfg: lc, srv: srv, scheme: "http", client: cfg.Client, timeout: cfg.TimeOut,
		errPages: lc.ErrorFiles, methods: map[string]bool{}, logLevel: cfg.LogLevel}
	l.name = lc.Name + " " + net.JoinHostPort(lc.Address, strconv.Itoa(lc.Port))
	l.clients = srv.m.clients.WithLabelValues(l.name)
	if lc.Client > 0 {
		l.client = lc.Client
	}
	if lc.TimeOut > 0 {
		l.timeout = lc.TimeOut
	}
	if lc.LogLevel >= 0 {
		l.logLevel = lc.LogLevel
	}
	l.trusted = append(append(l.trusted, cfg.Trusted...), lc.Trusted...)
	for i := 0; i <= lc.XHTTP; i++ {
		for _, m := range xhttpMethods[i] {
			l.methods[m] = true
		}
	}
	for _, h := range lc.AddHeaders {
		l.extraHeaders = append(append(l.extraHeaders, h...), "\r\n"...)
	}
	for _, h := range lc.SetHeaders {
		name, _, _ := cutColon(h)
		l.setNames = append(l.setNames, []byte(name))
		l.extraHeaders = append(append(l.extraHeaders, h...), "\r\n"...)
	}
	if lc.Kind == KindHTTPS {
		l.scheme = "https"
		l.tlsConf = &tls.Config{Certificates: lc.Certs, MinVersion: max(lc.MinTLS, tls.VersionTLS10), NextProtos: []string{"http/1.1"}}
	}
	for _, sc := range lc.Services {
		l.services = append(l.services, srv.newService(sc))
	}
	l.services = append(l.services, global...)
	return l
}

func cutColon(h string) (string, string, bool) {
	for i := 0; i < len(h); i++ {
		if h[i] == ':' {
			return h[:i], h[i+1:], true
		}
	}
	return h, "", false
}

// sock is an open listening socket; its handler is swapped on reload.
type sock struct {
	key     string // kind and address, to match sockets across reloads
	ln      net.Listener
	pc      net.PacketConn
	handler atomic.Pointer[handlerRef]
	done    chan struct{}
}

type handlerRef struct {
	http *httpListener
	tcp  *tcpListener
	udp  *udpListener
}

func sockKey(lc *ListenerConfig) string {
	k := lc.Kind
	if k == KindHTTPS {
		k = KindHTTP // the same TCP socket may switch between HTTP and HTTPS
	}
	k += " " + net.JoinHostPort(lc.Address, strconv.Itoa(lc.Port))
	if lc.Port == 0 {
		k += fmt.Sprintf(" %p", lc) // an ephemeral port is never shared
	}
	return k
}

// acceptLoop serves a stream socket until it is closed.
func (s *sock) acceptLoop(ctx context.Context) {
	defer close(s.done)
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return
		}
		delay = 0
		h := s.handler.Load()
		switch {
		case h.http != nil:
			l := h.http
			if l.tlsConf != nil {
				c = tls.Server(c, l.tlsConf)
			}
			go func() {
				cc := l.newClientConn(c)
				if !l.srv.track(c, &cc.idle) {
					cc.release()
					return
				}
				defer l.srv.untrack(c)
				l.clients.Inc()
				defer l.clients.Dec()
				cc.serve(ctx)
			}()
		case h.tcp != nil:
			t := h.tcp
			if !t.srv.track(c, nil) {
				c.Close()
				continue
			}
			go func() {
				defer t.srv.untrack(c)
				t.serve(ctx, c)
			}()
		default:
			c.Close()
		}
	}
}

func isTemporary(err error) bool {
	type temp interface{ Temporary() bool }
	t, ok := err.(temp)
	return ok && t.Temporary()
}
