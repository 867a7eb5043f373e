package proxy

import (
	"context"
	"io"
	"net"
	"strconv"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// tcpListener forwards raw TCP connections (SMTP, IMAP, DNS over TCP).
type tcpListener struct {
	cfg  *ListenerConfig
	srv  *instance
	svc  *service
	name string
}

func (in *instance) newTCPListener(lc *ListenerConfig) *tcpListener {
	t := &tcpListener{cfg: lc, srv: in, name: lc.Name + " " + net.JoinHostPort(lc.Address, strconv.Itoa(lc.Port))}
	if len(lc.Services) > 0 {
		t.svc = in.newService(lc.Services[0])
	}
	return t
}

// dialAny connects to a usable backend, normal ones first, trying each
// once; a connect failure marks the backend dead.
func dialAny(ctx context.Context, s *service, network string) (*backend, net.Conn, error) {
	var tried uint64
	for range len(s.backends) + len(s.emergency) {
		b := s.choose(s.backends, tried)
		if b == nil {
			b = s.choose(s.emergency, tried)
		}
		if b == nil {
			break
		}
		tried |= 1 << uint(b.id%64)
		d := net.Dialer{Timeout: b.connTO}
		if network == "udp" {
			c, err := d.DialContext(ctx, "udp", b.addr)
			if err == nil {
				return b, c, nil
			}
			b.setAlive(false, err.Error())
			continue
		}
		c, err := d.DialContext(ctx, b.network, b.addr)
		if err == nil {
			b.m.conns.Inc()
			return b, c, nil
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		b.m.failures.Inc()
		b.setAlive(false, err.Error())
	}
	return nil, nil, errNoBackend
}

func (t *tcpListener) serve(ctx context.Context, c net.Conn) {
	defer c.Close()
	m := t.srv.m
	m.clients.WithLabelValues(t.name).Inc()
	defer m.clients.WithLabelValues(t.name).Dec()
	b, bc, err := dialAny(ctx, t.svc, "tcp")
	if err != nil {
		t.srv.log.Warn("tcp: no backend", "listener", t.name, "client", c.RemoteAddr().String())
		return
	}
	defer bc.Close()
	if b.cfg.ProxyProtocol != 0 {
		h := proxyproto.HeaderProxyFromAddrs(byte(b.cfg.ProxyProtocol), c.RemoteAddr(), c.LocalAddr())
		bc.SetWriteDeadline(time.Now().Add(b.connTO))
		if _, err := h.WriteTo(bc); err != nil {
			return
		}
		bc.SetWriteDeadline(time.Time{})
	}
	start := time.Now()
	done := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(bc, c)
		closeWrite(bc)
		done <- n
	}()
	out, _ := io.Copy(c, bc)
	closeWrite(c)
	in := <-done
	m.bytesIn.Add(float64(in))
	m.bytesOut.Add(float64(out))
	b.m.codes[2].Inc()
	if t.srv.alog != nil && t.srv.cfg.LogLevel > 0 {
		line := c.RemoteAddr().String() + " TCP " + t.name + " -> " + b.addr + " in=" + strconv.FormatInt(in, 10) +
			" out=" + strconv.FormatInt(out, 10) + " " + strconv.FormatFloat(time.Since(start).Seconds(), 'f', 3, 64) + " sec\n"
		t.srv.alog.write([]byte(line))
	}
}
