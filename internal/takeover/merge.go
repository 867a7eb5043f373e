package takeover

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Several sockets bound to one address (one per address family, or a
// SO_REUSEPORT group with one per worker) are merged into one listener or
// packet conn. Nothing is taken from a socket before the caller asks:
// readiness is polled, and only then is one connection accepted or one
// datagram read, so that closing the merged socket leaves everything not
// yet asked for queued in the kernel, for whoever owns the sockets next.

const pollInterval = 50 * time.Millisecond

type merged struct {
	fds    []int
	closed chan struct{}
	once   sync.Once
	mu     sync.Mutex
	dl     time.Time
}

func rawFD(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	fd := -1
	err = rc.Control(func(f uintptr) { fd = int(f) })
	return fd, err
}

// wait returns the index of a socket that is ready to read, or an error
// once closed or past the deadline.
func (m *merged) wait() (int, error) {
	pfds := make([]unix.PollFd, len(m.fds))
	for {
		select {
		case <-m.closed:
			return 0, net.ErrClosed
		default:
		}
		m.mu.Lock()
		dl := m.dl
		m.mu.Unlock()
		wait := pollInterval
		if !dl.IsZero() {
			left := time.Until(dl)
			if left <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			wait = min(wait, left)
		}
		for i, fd := range m.fds {
			pfds[i] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
		}
		n, err := unix.Poll(pfds, int(wait/time.Millisecond)+1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return 0, err
		}
		if n <= 0 {
			continue
		}
		for i := range pfds {
			if pfds[i].Revents&(unix.POLLIN|unix.POLLERR|unix.POLLHUP) != 0 {
				return i, nil
			}
		}
	}
}

func (m *merged) close(closeAll func()) {
	m.once.Do(func() {
		close(m.closed)
		closeAll()
	})
}

type mergedListener struct {
	merged
	lns []*net.TCPListener
}

// MergeListeners returns one listener that accepts from all of lns (TCP
// listeners). Close closes every one of them. A single listener is
// returned as it is.
func MergeListeners(lns []net.Listener) (net.Listener, error) {
	if len(lns) == 1 {
		return lns[0], nil
	}
	m := &mergedListener{merged: merged{closed: make(chan struct{})}}
	for _, ln := range lns {
		tl, ok := ln.(*net.TCPListener)
		if !ok {
			return nil, errors.New("merge: not a TCP listener")
		}
		fd, err := rawFD(tl)
		if err != nil {
			return nil, err
		}
		m.lns, m.fds = append(m.lns, tl), append(m.fds, fd)
	}
	return m, nil
}

func (m *mergedListener) Accept() (net.Conn, error) {
	for {
		i, err := m.wait()
		if err != nil {
			return nil, err
		}
		// Another owner of the socket may have taken the connection.
		m.lns[i].SetDeadline(time.Now().Add(10 * time.Millisecond))
		c, err := m.lns[i].Accept()
		m.lns[i].SetDeadline(time.Time{})
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, err
		}
	}
}

func (m *mergedListener) Close() error {
	m.close(func() {
		for _, ln := range m.lns {
			ln.Close()
		}
	})
	return nil
}

func (m *mergedListener) Addr() net.Addr { return m.lns[0].Addr() }

type mergedPacketConn struct {
	merged
	pcs []net.PacketConn
	// via remembers which socket each client's last datagram came in on:
	// replies must leave from the address it was sent to (sockets of one
	// port may be bound to different addresses).
	viaMu sync.Mutex
	via   map[string]int
}

// MergePacketConns returns one PacketConn that reads from all of pcs (UDP
// sockets) and answers each client through the socket it wrote to. A
// single one is returned as it is.
func MergePacketConns(pcs []net.PacketConn) (net.PacketConn, error) {
	if len(pcs) == 1 {
		return pcs[0], nil
	}
	m := &mergedPacketConn{merged: merged{closed: make(chan struct{})}, pcs: pcs, via: map[string]int{}}
	for _, pc := range pcs {
		sc, ok := pc.(syscall.Conn)
		if !ok {
			return nil, errors.New("merge: not a socket")
		}
		fd, err := rawFD(sc)
		if err != nil {
			return nil, err
		}
		m.fds = append(m.fds, fd)
	}
	return m, nil
}

func (m *mergedPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		i, err := m.wait()
		if err != nil {
			return 0, nil, err
		}
		m.pcs[i].SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		n, addr, err := m.pcs[i].ReadFrom(b)
		m.pcs[i].SetReadDeadline(time.Time{})
		if err == nil {
			m.viaMu.Lock()
			if len(m.via) > maxVia {
				clear(m.via)
			}
			m.via[addr.String()] = i
			m.viaMu.Unlock()
			return n, addr, nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, nil, err
		}
	}
}

// maxVia bounds the memory of where clients wrote to.
const maxVia = 1 << 16

// WriteTo answers through the socket addr last wrote to.
func (m *mergedPacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	m.viaMu.Lock()
	i := m.via[addr.String()]
	m.viaMu.Unlock()
	return m.pcs[i].WriteTo(b, addr)
}

func (m *mergedPacketConn) Close() error {
	m.close(func() {
		for _, pc := range m.pcs {
			pc.Close()
		}
	})
	return nil
}

func (m *mergedPacketConn) LocalAddr() net.Addr { return m.pcs[0].LocalAddr() }

func (m *mergedPacketConn) SetDeadline(t time.Time) error { return m.SetReadDeadline(t) }

func (m *mergedPacketConn) SetReadDeadline(t time.Time) error {
	m.mu.Lock()
	m.dl = t
	m.mu.Unlock()
	return nil
}

func (m *mergedPacketConn) SetWriteDeadline(t time.Time) error { return m.pcs[0].SetWriteDeadline(t) }
