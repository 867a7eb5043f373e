package sockdiag

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/internal/testenv"
)

// Listeners opened here are found, with their address, port and the inode
// /proc/net/tcp gives them; a connected socket is not a listener.
func TestTCPListeners(t *testing.T) {
	var want []*net.TCPAddr
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Logf("%s: %v (no IPv6 here?)", addr, err)
			continue
		}
		defer l.Close()
		want = append(want, l.Addr().(*net.TCPAddr))
	}
	c, err := net.Dial("tcp", want[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := TCPListeners("")
	if err != nil {
		t.Fatal(err)
	}
	inodes := procInodes(t)
	for _, w := range want {
		found := false
		for _, s := range got {
			if s.Port == w.Port && s.Addr.Equal(w.IP) {
				found = true
				if !inodes[s.Inode] {
					t.Errorf("%v: inode %d is not a listener's in /proc/net/tcp*", w, s.Inode)
				}
			}
		}
		if !found {
			t.Errorf("listener %v not found in %v", w, got)
		}
	}
	local := c.LocalAddr().(*net.TCPAddr)
	for _, s := range got {
		if s.Port == local.Port && s.Addr.Equal(local.IP) {
			t.Errorf("a connected socket listed as listening: %v", s)
		}
	}
}

// procInodes reads the inodes of the LISTEN sockets in /proc/self/net/tcp{,6}.
func procInodes(t *testing.T) map[uint64]bool {
	out := map[uint64]bool{}
	for _, f := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(l)
			if len(f) >= 10 && f[3] == "0A" {
				n, _ := strconv.ParseUint(f[9], 10, 64)
				out[n] = true
			}
		}
	}
	return out
}

func BenchmarkTCPListeners(b *testing.B) {
	for b.Loop() {
		if _, err := TCPListeners(""); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkProcNetTCP(b *testing.B) {
	for b.Loop() {
		for _, f := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
			if _, err := os.ReadFile(f); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// Another namespace's listeners are read from inside it (root only).
func TestTCPListenersOtherNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "entering a network namespace needs root")
	}
	for _, tool := range []string{"unshare", "nc", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Skip(t, tool+" not installed")
		}
	}
	cmd := exec.Command("unshare", "--net", "sh", "-c", "ip link set lo up && exec nc -l 127.0.0.1 4567")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	ns := fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)
	has := func(socks []Socket) bool {
		for _, s := range socks {
			if s.Port == 4567 {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := TCPListeners(ns)
		if err != nil {
			t.Fatal(err)
		}
		if has(got) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the namespace's listener on 4567 never showed: %v", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if own, _ := TCPListeners(""); has(own) {
		t.Error("the other namespace's listener showed in ours")
	}
}
