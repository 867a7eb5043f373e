package facts

import (
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
)

// TCP state LISTEN and UDP's "unconnected" state in /proc/net/*.
const (
	tcpListen   = "0A"
	udpUnconned = "07"
)

// sockets reads the listening sockets of the network namespace /proc
// shows and matches them to processes through /proc/PID/fd.
func (c *Collector) sockets(warn func(string)) ([]Socket, error) {
	var socks []Socket
	read := 0
	for _, proto := range []string{"tcp", "tcp6", "udp", "udp6"} {
		data, err := os.ReadFile(c.proc("net", proto))
		if err != nil {
			if !os.IsNotExist(err) { // tcp6/udp6 are absent without IPv6
				warn(fmt.Sprintf("sockets: %v", err))
			}
			continue
		}
		read++
		s, err := parseNet(proto, string(data))
		if err != nil {
			return nil, fmt.Errorf("facts: %s: %w", c.proc("net", proto), err)
		}
		socks = append(socks, s...)
	}
	if read == 0 {
		warn("sockets: no /proc/net/{tcp,udp} readable")
	}
	owners, denied := c.socketOwners()
	unresolved := 0
	for i := range socks {
		pids := owners[socks[i].Inodes[0]]
		if len(pids) == 0 {
			unresolved++
			continue
		}
		sort.Ints(pids)
		s := &socks[i]
		s.PIDs, s.PID = pids, pids[0]
		s.Process = readLine(c.proc(strconv.Itoa(s.PID), "comm"))
		s.Exe, _ = os.Readlink(c.proc(strconv.Itoa(s.PID), "exe"))
	}
	if unresolved > 0 && denied > 0 {
		warn(fmt.Sprintf("sockets: %d socket(s) without a process: %d process(es) could not be inspected (run as root)", unresolved, denied))
	}
	return socks, nil
}

// parseNet parses one /proc/net/{tcp,tcp6,udp,udp6} table and returns its
// listening (TCP) or bound unconnected (UDP) sockets.
func parseNet(proto, data string) ([]Socket, error) {
	var out []Socket
	want := tcpListen
	if strings.HasPrefix(proto, "udp") {
		want = udpUnconned
	}
	lines := strings.Split(data, "\n")
	for n, l := range lines {
		f := strings.Fields(l)
		if n == 0 || len(f) == 0 {
			continue // header
		}
		if len(f) < 10 {
			return nil, fmt.Errorf("line %d: %d fields, want at least 10", n+1, len(f))
		}
		if f[3] != want {
			continue
		}
		ip, port, err := parseHexAddr(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: local address: %w", n+1, err)
		}
		if port == 0 {
			continue
		}
		uid, _ := strconv.Atoi(f[7])
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: inode %q", n+1, f[9])
		}
		out = append(out, Socket{Proto: proto, Address: ip.String(), Port: port, UID: uid, Inodes: []uint64{inode}})
	}
	return out, nil
}

// parseHexAddr decodes "0100007F:0035": the address as 32-bit words in
// host (little-endian) order, the port big-endian hex.
func parseHexAddr(s string) (net.IP, int, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return nil, 0, fmt.Errorf("%q has no port", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return nil, 0, fmt.Errorf("port %q", p)
	}
	b, err := hex.DecodeString(a)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return nil, 0, fmt.Errorf("address %q", a)
	}
	ip := make(net.IP, len(b))
	for w := 0; w < len(b); w += 4 {
		ip[w], ip[w+1], ip[w+2], ip[w+3] = b[w+3], b[w+2], b[w+1], b[w]
	}
	if len(ip) == 16 {
		if v4 := ip.To4(); v4 != nil && !ip.Equal(net.IPv6zero) {
			return v4, int(port), nil // ::ffff:a.b.c.d
		}
	}
	return ip, int(port), nil
}

// socketOwners maps socket inodes to the PIDs holding them, and counts the
// processes whose fds could not be read.
func (c *Collector) socketOwners() (map[uint64][]int, int) {
	owners := map[uint64][]int{}
	entries, err := os.ReadDir(c.proc())
	if err != nil {
		return owners, 0
	}
	denied := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		fdDir := c.proc(e.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			if os.IsPermission(err) {
				denied++
			}
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(fdDir + "/" + fd.Name())
			if err != nil || !strings.HasPrefix(link, "socket:[") {
				continue
			}
			ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"), 10, 64)
			if err != nil {
				continue
			}
			if l := owners[ino]; len(l) == 0 || l[len(l)-1] != pid {
				owners[ino] = append(l, pid)
			}
		}
	}
	return owners, denied
}
