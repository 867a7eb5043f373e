package proxy

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// udpListener forwards datagrams (DNS): each client address gets its own
// connected socket to a backend, kept while replies keep coming.
type udpListener struct {
	cfg     *ListenerConfig
	srv     *instance
	svc     *service
	name    string
	timeout time.Duration
	mu      sync.Mutex
	flows   map[string]*udpFlow
}

type udpFlow struct {
	b  *backend
	up net.Conn
}

const maxUDPFlows = 16384

func (in *instance) newUDPListener(lc *ListenerConfig) *udpListener {
	u := &udpListener{cfg: lc, srv: in, name: lc.Name + " " + net.JoinHostPort(lc.Address, strconv.Itoa(lc.Port)),
		timeout: in.cfg.TimeOut, flows: map[string]*udpFlow{}}
	if lc.TimeOut > 0 {
		u.timeout = lc.TimeOut
	}
	if len(lc.Services) > 0 {
		u.svc = in.newService(lc.Services[0])
		for _, b := range u.svc.all() {
			b.udp = true
		}
	}
	return u
}

// packetLoop reads datagrams and hands them to the current handler.
func (s *sock) packetLoop(ctx context.Context) {
	defer close(s.done)
	buf := make([]byte, 64<<10)
	for {
		n, addr, err := s.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		h := s.handler.Load()
		if h == nil || h.udp == nil {
			continue
		}
		h.udp.forward(ctx, s.pc, buf[:n], addr)
	}
}

func (u *udpListener) forward(ctx context.Context, pc net.PacketConn, pkt []byte, client net.Addr) {
	key := client.String()
	u.mu.Lock()
	f := u.flows[key]
	u.mu.Unlock()
	if f == nil || !f.b.usable() {
		u.mu.Lock()
		full := len(u.flows) >= maxUDPFlows
		u.mu.Unlock()
		if full {
			return
		}
		b, up, err := dialAny(ctx, u.svc, "udp")
		if err != nil {
			return
		}
		f = &udpFlow{b: b, up: up}
		u.mu.Lock()
		if old := u.flows[key]; old != nil {
			old.up.Close()
		}
		u.flows[key] = f
		u.mu.Unlock()
		go u.replies(pc, f, client, key)
	}
	if _, err := f.up.Write(pkt); err == nil {
		u.srv.m.bytesIn.Add(float64(len(pkt)))
	}
}

// replies copies datagrams from the backend to the client until the flow
// is idle for the timeout. A refused port marks the backend dead.
func (u *udpListener) replies(pc net.PacketConn, f *udpFlow, client net.Addr, key string) {
	defer func() {
		u.mu.Lock()
		if u.flows[key] == f {
			delete(u.flows, key)
		}
		u.mu.Unlock()
		f.up.Close()
	}()
	buf := make([]byte, 64<<10)
	for {
		f.up.SetReadDeadline(time.Now().Add(u.timeout))
		n, err := f.up.Read(buf)
		if err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				f.b.m.failures.Inc()
				f.b.setAlive(false, "port unreachable")
			}
			return
		}
		if _, err := pc.WriteTo(buf[:n], client); err == nil {
			u.srv.m.bytesOut.Add(float64(n))
			f.b.m.codes[2].Inc()
		}
	}
}

// probeUDP sends an empty datagram: only an ICMP port unreachable (seen
// as ECONNREFUSED on a connected socket) counts as dead.
func (b *backend) probeUDP(ctx context.Context) error {
	d := net.Dialer{Timeout: b.connTO}
	c, err := d.DialContext(ctx, "udp", b.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(min(b.connTO, 500*time.Millisecond)))
	if _, err := c.Write(nil); err != nil {
		return err
	}
	var one [512]byte
	if _, err := c.Read(one[:]); err != nil && errors.Is(err, syscall.ECONNREFUSED) {
		return err
	}
	return nil
}
