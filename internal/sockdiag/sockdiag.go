// Package sockdiag lists listening TCP sockets through the kernel's
// sock_diag netlink interface (NETLINK_SOCK_DIAG, inet_diag). Reading
// /proc/net/tcp walks the whole hash of established connections on every
// read, which is shared by all network namespaces and sized by memory:
// 1.7 ms on a test VM even in an empty namespace. A dump restricted to the
// LISTEN state walks only the listening hash.
package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// Socket is one listening TCP socket.
type Socket struct {
	Family int // unix.AF_INET or unix.AF_INET6
	Addr   net.IP
	Port   int
	Inode  uint64
}

const (
	tcpListen   = 10 // TCP_LISTEN in include/net/tcp_states.h
	reqLen      = 56 // struct inet_diag_req_v2
	msgLen      = 72 // struct inet_diag_msg
	sockIDStart = 4  // offset of struct inet_diag_sockid in both
)

// TCPListeners returns the listening TCP sockets (IPv4 and IPv6) of the
// network namespace at nsPath (e.g. /proc/PID/ns/net); "" means the
// caller's own. Entering another namespace needs CAP_SYS_ADMIN.
func TCPListeners(nsPath string) ([]Socket, error) {
	fd, err := socketIn(nsPath)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var out []Socket
	for _, family := range []int{unix.AF_INET, unix.AF_INET6} {
		s, err := dump(fd, family)
		if err != nil {
			return nil, err
		}
		out = append(out, s...)
	}
	return out, nil
}

// socketIn opens a sock_diag socket in the namespace at nsPath. A
// socket belongs to the namespace it was made in, so only its creation
// needs the thread to enter it; the thread is then thrown away rather
// than trusted to have gone back.
func socketIn(nsPath string) (int, error) {
	open := func() (int, error) {
		return unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	}
	if nsPath == "" || sameNS(nsPath, "/proc/thread-self/ns/net") {
		return open()
	}
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		ns, err := os.Open(nsPath)
		if err != nil {
			ch <- result{-1, err}
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{-1, fmt.Errorf("enter network namespace %s: %w", nsPath, err)}
			return
		}
		fd, err := open()
		ch <- result{fd, err}
	}()
	r := <-ch
	return r.fd, r.err
}

// sameNS reports whether two namespace files name the same namespace.
func sameNS(a, b string) bool {
	var sa, sb unix.Stat_t
	return unix.Stat(a, &sa) == nil && unix.Stat(b, &sb) == nil && sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// dump asks for every TCP socket of family in LISTEN and parses the
// answer.
func dump(fd, family int) ([]Socket, error) {
	req := make([]byte, unix.NLMSG_HDRLEN+reqLen)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:], 1) // sequence number
	r := req[unix.NLMSG_HDRLEN:]
	r[0], r[1] = byte(family), unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(r[4:], 1<<tcpListen)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sock_diag request: %w", err)
	}
	var out []Socket
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("sock_diag answer: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("sock_diag answer: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
						return nil, fmt.Errorf("sock_diag: %w", syscall.Errno(-e))
					}
				}
				return nil, errors.New("sock_diag: error answer")
			}
			if s, ok := parseMsg(m.Data); ok {
				out = append(out, s)
			}
		}
	}
}

// parseMsg reads a struct inet_diag_msg.
func parseMsg(b []byte) (Socket, bool) {
	if len(b) < msgLen || b[1] != tcpListen {
		return Socket{}, false
	}
	id := b[sockIDStart:]
	s := Socket{Family: int(b[0]), Port: int(binary.BigEndian.Uint16(id[0:])), Inode: uint64(binary.NativeEndian.Uint32(b[68:]))}
	switch s.Family {
	case unix.AF_INET:
		s.Addr = net.IP(append([]byte(nil), id[4:8]...))
	case unix.AF_INET6:
		s.Addr = net.IP(append([]byte(nil), id[4:20]...))
	default:
		return Socket{}, false
	}
	return s, true
}
