package capture

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/migrate-tool/migrate/internal/sockdiag"
)

// procRoot is where /proc is read; tests may point it elsewhere.
var procRoot = "/proc"

// Process is what /proc tells about one process of the service.
type Process struct {
	PID     int      `json:"pid"`
	PPID    int      `json:"ppid"`
	Comm    string   `json:"comm"`
	Exe     string   `json:"exe"`
	Cmdline []string `json:"cmdline"`
	Cwd     string   `json:"cwd"`
	Root    string   `json:"root"`
	UID     int      `json:"uid"`
	GID     int      `json:"gid"`
	Env     []string `json:"-"`
	Files   []string `json:"files,omitempty"` // open files and directories (absolute paths)
	Maps    []string `json:"maps,omitempty"`  // mapped files
	sockets map[uint64]bool
}

// ErrPermission marks /proc entries the caller may not read.
var ErrPermission = errors.New("permission denied")

func procPath(pid int, parts ...string) string {
	return filepath.Join(append([]string{procRoot, strconv.Itoa(pid)}, parts...)...)
}

// pids lists the numeric entries of /proc.
func pids() ([]int, error) {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", procRoot, err)
	}
	var out []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, n)
		}
	}
	sort.Ints(out)
	return out, nil
}

// readBasic reads comm, ppid, uid/gid and cmdline (readable for any
// process) and exe (needs privilege for other users' processes; "" then).
func readBasic(pid int) (*Process, error) {
	p := &Process{PID: pid}
	st, err := os.ReadFile(procPath(pid, "status"))
	if err != nil {
		return nil, err
	}
	for _, l := range strings.Split(string(st), "\n") {
		k, v, _ := strings.Cut(l, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "Name":
			p.Comm = f[0]
		case "PPid":
			p.PPID, _ = strconv.Atoi(f[0])
		case "Uid":
			p.UID, _ = strconv.Atoi(f[0])
		case "Gid":
			p.GID, _ = strconv.Atoi(f[0])
		}
	}
	if cl, err := os.ReadFile(procPath(pid, "cmdline")); err == nil {
		p.Cmdline = normalizeCmdline(splitNul(cl))
	}
	p.Exe, _ = os.Readlink(procPath(pid, "exe"))
	p.Exe = strings.TrimSuffix(p.Exe, " (deleted)")
	return p, nil
}

// normalizeCmdline undoes argv rewriting such as nginx's
// "nginx: master process /usr/sbin/nginx -c FILE" (one string).
func normalizeCmdline(argv []string) []string {
	if len(argv) != 1 || !strings.Contains(argv[0], " ") {
		return argv
	}
	s := argv[0]
	if _, after, ok := strings.Cut(s, " process "); ok && strings.Contains(s[:len(s)-len(after)], ":") {
		s = after
	}
	return strings.Fields(s)
}

func splitNul(b []byte) []string {
	s := strings.TrimRight(string(b), "\x00")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\x00")
}

// readDetail fills cwd, root, environment, open files, sockets and maps.
// It needs to be root or the process's owner.
func (p *Process) readDetail() error {
	var err error
	if p.Cwd, err = os.Readlink(procPath(p.PID, "cwd")); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("inspect process %d (%s): %w", p.PID, p.Comm, ErrPermission)
		}
		return fmt.Errorf("inspect process %d (%s): %w", p.PID, p.Comm, err)
	}
	p.Root, _ = os.Readlink(procPath(p.PID, "root"))
	if env, err := os.ReadFile(procPath(p.PID, "environ")); err == nil {
		p.Env = splitNul(env)
	}
	p.sockets = map[uint64]bool{}
	fds, _ := os.ReadDir(procPath(p.PID, "fd"))
	for _, fd := range fds {
		t, err := os.Readlink(procPath(p.PID, "fd", fd.Name()))
		if err != nil {
			continue
		}
		if ino, ok := strings.CutPrefix(t, "socket:["); ok {
			if n, err := strconv.ParseUint(strings.TrimSuffix(ino, "]"), 10, 64); err == nil {
				p.sockets[n] = true
			}
			continue
		}
		if strings.HasPrefix(t, "/") && !strings.HasSuffix(t, " (deleted)") {
			p.Files = append(p.Files, t)
		}
	}
	p.Maps = readMaps(p.PID)
	return nil
}

func readMaps(pid int) []string {
	f, err := os.Open(procPath(pid, "maps"))
	if err != nil {
		return nil
	}
	defer f.Close()
	seen := map[string]bool{}
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 6 || !strings.HasPrefix(fs[5], "/") || len(fs) > 6 {
			continue // anonymous, [heap], or "(deleted)"
		}
		if p := fs[5]; !seen[p] && !strings.HasPrefix(p, "/dev/") && !strings.HasPrefix(p, "/memfd:") {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// env returns the value of a variable in the process's environment.
func (p *Process) env(key string) string {
	for _, kv := range p.Env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// arg returns the value after flag in the command line ("-c FILE" or "-cFILE").
func (p *Process) arg(flag string) string {
	for i, a := range p.Cmdline {
		if a == flag && i+1 < len(p.Cmdline) {
			return p.Cmdline[i+1]
		}
		if strings.HasPrefix(a, flag) && len(a) > len(flag) && !strings.HasPrefix(flag, "--") {
			return a[len(flag):]
		}
	}
	return ""
}

// listener is one listening socket from /proc/PID/net.
type listener struct {
	Port
	inode uint64
}

// listeners reads the listening TCP and bound UDP sockets of the network
// namespace pid lives in: TCP through sock_diag (see internal/sockdiag),
// or /proc/PID/net/tcp{,6} where that fails; UDP from /proc/PID/net, which
// is cheap for UDP.
func listeners(pid int) []listener {
	var out []listener
	protos := []string{"udp", "udp6"}
	if socks, err := sockdiag.TCPListeners(procPath(pid, "ns", "net")); err == nil {
		for _, s := range socks {
			proto := "tcp"
			if s.Family == unix.AF_INET6 {
				proto = "tcp6"
			}
			out = append(out, listener{Port: Port{Proto: proto, Addr: s.Addr.String(), Port: s.Port}, inode: s.Inode})
		}
	} else {
		protos = []string{"tcp", "tcp6", "udp", "udp6"}
	}
	for _, proto := range protos {
		b, err := os.ReadFile(procPath(pid, "net", proto))
		if err != nil {
			continue
		}
		out = append(out, parseNet(proto, string(b))...)
	}
	return out
}

// parseNet parses a /proc/net/{tcp,udp}[6] table, keeping TCP sockets in
// LISTEN (0A) and UDP sockets with no remote peer.
func parseNet(proto, table string) []listener {
	var out []listener
	for i, l := range strings.Split(table, "\n") {
		f := strings.Fields(l)
		if i == 0 || len(f) < 10 {
			continue
		}
		st := f[3]
		if strings.HasPrefix(proto, "tcp") && st != "0A" {
			continue
		}
		if strings.HasPrefix(proto, "udp") && !strings.HasSuffix(f[2], ":0000") {
			continue
		}
		addr, port, ok := parseHexAddr(f[1])
		ino, err := strconv.ParseUint(f[9], 10, 64)
		if !ok || err != nil || ino == 0 {
			continue
		}
		out = append(out, listener{Port: Port{Proto: proto, Addr: addr, Port: port}, inode: ino})
	}
	return out
}

func parseHexAddr(s string) (string, int, bool) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return "", 0, false
	}
	port, err := strconv.ParseUint(p, 16, 16)
	raw, err2 := hex.DecodeString(a)
	if err != nil || err2 != nil || (len(raw) != 4 && len(raw) != 16) {
		return "", 0, false
	}
	// /proc prints each 32-bit word in host (little-endian) order.
	for i := 0; i+4 <= len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	return net.IP(raw).String(), int(port), true
}
