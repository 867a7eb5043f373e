package takeover

import (
	"bufio"
	"errors"
	"fmt"
	"github.com/migrate-tool/migrate/internal/testenv"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestHelperServer is not a test: run as a child process, it listens on a
// loopback port, prints it, and answers "old" to every connection until
// killed.
func TestHelperServer(t *testing.T) {
	if os.Getenv("TAKEOVER_HELPER") != "1" {
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.WriteString(c, "old\n")
		c.Close()
	}
}

func startHelper(t *testing.T) (*exec.Cmd, int) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperServer$")
	cmd.Env = append(os.Environ(), "TAKEOVER_HELPER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("helper said %q", line)
	}
	return cmd, port
}

func TestTakeOverWithoutRefusing(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "pidfd_getfd on another process needs root")
	}
	cmd, port := startHelper(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	ln, sock, err := Listener("/proc", port)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if sock.PID != cmd.Process.Pid {
		t.Fatalf("found pid %d, helper is %d", sock.PID, cmd.Process.Pid)
	}
	// The old process is stopped; its copy of the socket closes with it.
	cmd.Process.Kill()
	cmd.Wait()

	// Connections are neither refused nor answered: they wait in the queue.
	type result struct {
		s   string
		err error
	}
	results := make(chan result, 5)
	for i := 0; i < 5; i++ {
		go func() {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				results <- result{err: err}
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			b, err := bufio.NewReader(c).ReadString('\n')
			results <- result{b, err}
		}()
	}
	select {
	case r := <-results:
		t.Fatalf("a connection finished before the new owner accepted: %+v", r)
	case <-time.After(200 * time.Millisecond):
	}
	// The new owner now serves them all.
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "new\n")
			c.Close()
		}
	}()
	for i := 0; i < 5; i++ {
		r := <-results
		if r.err != nil || r.s != "new\n" {
			t.Fatalf("connection %d: %q %v", i, r.s, r.err)
		}
	}
}

func TestFindNothing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	if _, err := Find("/proc", "tcp", port); !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
}

func TestFindSelf(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	socks, err := Find("/proc", "tcp", port)
	if err != nil {
		t.Fatal(err)
	}
	if len(socks) != 1 || socks[0].PID != os.Getpid() {
		t.Fatalf("found %+v, want our pid %d", socks, os.Getpid())
	}
}

// An accepted connection is counted and found among the process's
// sockets; one still in the accept queue is not.
func TestConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	queued, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer queued.Close()
	conns, err := Connections("/proc", port)
	if err != nil {
		t.Fatal(err)
	}
	if len(conns) != 0 {
		t.Fatalf("a connection not yet accepted counted: %v", conns)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conns, err = Connections("/proc", port)
	if err != nil {
		t.Fatal(err)
	}
	if len(conns) != 1 {
		t.Fatalf("connections on port %d: %v, want the accepted one", port, conns)
	}
	found := false
	for _, ino := range SocketInodes("/proc", os.Getpid()) {
		found = found || conns[ino]
	}
	if !found {
		t.Error("the accepted connection's inode is not among this process's sockets")
	}
}
