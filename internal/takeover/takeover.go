// Package takeover takes a listening socket over from a running process
// without ever closing it, so that a service can be replaced on its address
// with no connection refused: the new owner gets a duplicate of the
// process's socket with pidfd_getfd(2) (Linux 5.6 and later, root or
// ptrace rights over the process). While both hold it, the kernel keeps
// queueing connections in its backlog; once the old process has stopped
// and closed its copy, the duplicate still holds the socket open, and the
// queued connections wait there until the new owner accepts them.
package takeover

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/migrate-tool/migrate/internal/hint"
)

// Socket is a listening socket found in a process.
type Socket struct {
	PID   int
	FD    int
	Inode uint64
	Proto string // "tcp" or "udp"
	Addr  string // local address and port as the kernel reports it
}

// ErrNotFound means no process listens on the port.
var ErrNotFound = errors.New("no process listens on that port")

// Find returns the sockets listening on port (TCP; UDP when proto is
// "udp"), one per process that holds it. procRoot is normally "/proc".
func Find(procRoot, proto string, port int) ([]Socket, error) {
	inodes, err := netInodes(procRoot, proto, port)
	if err != nil {
		return nil, err
	}
	if len(inodes) == 0 {
		return nil, hint.With(fmt.Errorf("%s port %d: %w", proto, port, ErrNotFound), "is the service running on this host?")
	}
	procs, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, err
	}
	var out []Socket
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		for fd, ino := range socketFDs(procRoot, pid) {
			if addr, ok := inodes[ino]; ok {
				out = append(out, Socket{PID: pid, FD: fd, Inode: ino, Proto: proto, Addr: addr})
			}
		}
	}
	slices.SortFunc(out, func(a, b Socket) int { return cmp.Or(a.PID-b.PID, a.FD-b.FD) })
	if len(out) == 0 {
		return nil, fmt.Errorf("%s port %d is open but no process found holding it (permission?)", proto, port)
	}
	return out, nil
}

// Connections returns the inodes of the accepted TCP connections whose
// local port is port (any state but LISTEN, held by some process: a
// connection still in a listening socket's accept queue has no inode and
// is not counted). procRoot is normally "/proc".
func Connections(procRoot string, port int) (map[uint64]bool, error) {
	out := map[uint64]bool{}
	for _, f := range []string{"net/tcp", "net/tcp6"} {
		err := eachNet(filepath.Join(procRoot, f), func(local, state string, ino uint64) {
			if state != "0A" && localPort(local) == port {
				out[ino] = true
			}
		})
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	return out, nil
}

// netInodes maps the inodes of the sockets listening on port (TCP; any
// bound UDP socket when proto is "udp") to their local address.
func netInodes(procRoot, proto string, port int) (map[uint64]string, error) {
	inodes := map[uint64]string{}
	files := []string{"net/tcp", "net/tcp6"}
	if proto == "udp" {
		files = []string{"net/udp", "net/udp6"}
	}
	for _, f := range files {
		if err := scanNet(filepath.Join(procRoot, f), proto, port, inodes); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	return inodes, nil
}

// ListenInodes returns the inodes of the TCP sockets listening on port.
func ListenInodes(procRoot string, port int) (map[uint64]bool, error) {
	inodes, err := netInodes(procRoot, "tcp", port)
	out := map[uint64]bool{}
	for ino := range inodes {
		out[ino] = true
	}
	return out, err
}

// SocketInodes returns the socket inodes among a process's open files.
func SocketInodes(procRoot string, pid int) []uint64 {
	var out []uint64
	for _, ino := range socketFDs(procRoot, pid) {
		out = append(out, ino)
	}
	return out
}

// socketFDs maps a process's file descriptors that are sockets to their
// inodes (none if the process is gone or not ours to read).
func socketFDs(procRoot string, pid int) map[int]uint64 {
	fdDir := filepath.Join(procRoot, strconv.Itoa(pid), "fd")
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return nil
	}
	out := map[int]uint64{}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue
		}
		ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"), 10, 64)
		n, err2 := strconv.Atoi(fd.Name())
		if err == nil && err2 == nil {
			out[n] = ino
		}
	}
	return out
}

func localPort(local string) int {
	i := strings.LastIndexByte(local, ':')
	if i < 0 {
		return -1
	}
	p, err := strconv.ParseUint(local[i+1:], 16, 16)
	if err != nil {
		return -1
	}
	return int(p)
}

// eachNet calls fn for every socket with an inode in one /proc/net table.
func eachNet(path string, fn func(local, state string, ino uint64)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		ino, err := strconv.ParseUint(fields[9], 10, 64)
		if err != nil || ino == 0 {
			continue
		}
		fn(fields[1], fields[3], ino)
	}
	return sc.Err()
}

// scanNet adds the inodes of sockets listening on port (TCP state 0A, or
// any bound UDP socket) from one /proc/net table.
func scanNet(path, proto string, port int, inodes map[uint64]string) error {
	return eachNet(path, func(local, state string, ino uint64) {
		if (proto != "tcp" || state == "0A") && localPort(local) == port {
			inodes[ino] = local
		}
	})
}

// Dup returns a duplicate of the process's socket, owned by this process.
// It shares the socket (and its accept queue) with the process.
func Dup(s Socket) (*os.File, error) {
	pidfd, err := unix.PidfdOpen(s.PID, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", s.PID, err)
	}
	defer unix.Close(pidfd)
	fd, err := unix.PidfdGetfd(pidfd, s.FD, 0)
	if err != nil {
		err = fmt.Errorf("pidfd_getfd pid %d fd %d: %w", s.PID, s.FD, err)
		if errors.Is(err, unix.EPERM) {
			return nil, hint.With(err, "run as root (or with ptrace rights over the service)")
		}
		if errors.Is(err, unix.ENOSYS) {
			return nil, hint.With(err, "the kernel is older than 5.6; stop the service first and bind the address afresh")
		}
		return nil, err
	}
	return os.NewFile(uintptr(fd), fmt.Sprintf("socket:[%d]", s.Inode)), nil
}

// Unique keeps one Socket per socket (by inode): a socket shared by a
// master and its workers is taken over once.
func Unique(socks []Socket) []Socket {
	seen := map[uint64]bool{}
	var out []Socket
	for _, s := range socks {
		if !seen[s.Inode] {
			seen[s.Inode] = true
			out = append(out, s)
		}
	}
	return out
}

// DupAll duplicates every distinct socket in socks (a service may listen
// on one port with several sockets: one per address, or a SO_REUSEPORT
// group with one per worker, as BIND does). On error, the duplicates made
// so far are closed.
func DupAll(socks []Socket) ([]*os.File, error) {
	var files []*os.File
	for _, s := range Unique(socks) {
		f, err := Dup(s)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

// Listener takes over the TCP listening socket on port: it returns a
// net.Listener on a duplicate of the socket held by the first process
// found. Nothing is accepted until the caller calls Accept.
func Listener(procRoot string, port int) (net.Listener, Socket, error) {
	socks, err := Find(procRoot, "tcp", port)
	if err != nil {
		return nil, Socket{}, err
	}
	f, err := Dup(socks[0])
	if err != nil {
		return nil, socks[0], err
	}
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, socks[0], fmt.Errorf("listener from %s: %w", f.Name(), err)
	}
	return ln, socks[0], nil
}
