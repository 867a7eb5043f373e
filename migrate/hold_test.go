package migrate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/migrate-tool/migrate/internal/takeover"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// echoForwarder answers every connection with "new\n" (a stand-in for the
// proxy engine: this test is about holding and handing the socket back).
type echoForwarder struct{}

func (echoForwarder) Serve(ctx context.Context, held []Held) error {
	ln := held[0].TCP
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			return nil
		}
		io.WriteString(c, "new\n")
		c.Close()
	}
}

// TestHelperOldService is not a test: run by the rollback as the "old
// service", it serves "old\n" on the socket inherited as fd 3.
func TestHelperOldService(t *testing.T) {
	if os.Getenv("HOLD_HELPER") != "1" {
		return
	}
	// Like Postfix or BIND: bind afresh (with SO_REUSEPORT when asked),
	// never take an inherited socket.
	lc := net.ListenConfig{}
	if os.Getenv("HOLD_HELPER_REUSEPORT") == "1" {
		lc.Control = reusePortControl
	}
	ln, err := lc.Listen(context.Background(), "tcp", os.Getenv("HOLD_HELPER_ADDR"))
	if err != nil {
		os.Exit(3)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(0)
		}
		io.WriteString(c, "old\n")
		c.Close()
	}
}

func ask(t *testing.T, addr string) chan string {
	ch := make(chan string, 1)
	go func() {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			ch <- "dial: " + err.Error()
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		s, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			ch <- "read: " + err.Error()
			return
		}
		ch <- strings.TrimSpace(s)
	}()
	return ch
}

func reusePortControl(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
	return errors.Join(err, serr)
}

// Rollback to a daemon that binds afresh: with SO_REUSEPORT on the held
// socket it binds beside the holder, which lets go once it listens;
// without, the holder lets go first.
func TestHoldReleaseRollback(t *testing.T) {
	for _, reuse := range []bool{false, true} {
		t.Run(fmt.Sprintf("reuseport=%v", reuse), func(t *testing.T) { testHoldReleaseRollback(t, reuse) })
	}
}

func testHoldReleaseRollback(t *testing.T, reuse bool) {
	NewForwarder = func(HoldOptions, *slog.Logger) (Forwarder, error) { return echoForwarder{}, nil }
	defer func() { NewForwarder = nil }()
	lc := net.ListenConfig{}
	if reuse {
		lc.Control = reusePortControl
	}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // only the dup in f keeps the socket, as after a takeover
	// Hold owns the fds it is given (as the daemon owns its fds 3…): give
	// it a duplicate of its own, never one that this test closes too.
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	// Hold takes the socket from an fd number: make f's fd the one it uses.
	dir := t.TempDir()
	opts := HoldOptions{Ports: []HoldPort{{Port: ln.Addr().(*net.TCPAddr).Port, TCPFDs: []int{fd}, Listen: addr, Backend: "unused", Mode: ModeTCP}}, ControlSocket: filepath.Join(dir, "ctl.sock"), HoldTimeout: time.Minute}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Hold(ctx, opts, slog.New(slog.DiscardHandler)) }()
	waitState(t, ctx, opts.ControlSocket, "held")

	// Held: connected, but not answered.
	held := ask(t, addr)
	select {
	case s := <-held:
		t.Fatalf("answered while held: %q", s)
	case <-time.After(200 * time.Millisecond):
	}
	if st, err := HoldControl(ctx, opts.ControlSocket, HoldRequest{Cmd: HoldCmdRelease}); err != nil || st != "serving" {
		t.Fatalf("release: %q %v", st, err)
	}
	if s := <-held; s != "new" {
		t.Fatalf("held connection got %q after release", s)
	}
	if s := <-ask(t, addr); s != "new" {
		t.Fatalf("after release: %q", s)
	}

	// Rollback hands the socket to the "old service" and exits.
	exe, _ := os.Executable()
	t.Setenv("HOLD_HELPER", "1")
	t.Setenv("HOLD_HELPER_ADDR", addr)
	t.Setenv("HOLD_HELPER_REUSEPORT", map[bool]string{true: "1", false: "0"}[reuse])
	if _, err := HoldControl(ctx, opts.ControlSocket, HoldRequest{Cmd: HoldCmdRollback, Argv: []string{exe, "-test.run=^TestHelperOldService$"}}); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Hold after rollback: %v", err)
	}
	if reuse {
		// The old service listened before the holder let go: answered
		// at once.
		if s := <-ask(t, addr); s != "old" {
			t.Fatalf("after rollback: %q", s)
		}
	} else {
		// The address was free for a moment: refused until it binds.
		deadline := time.Now().Add(10 * time.Second)
		for s := <-ask(t, addr); s != "old"; s = <-ask(t, addr) {
			if !strings.Contains(s, "refused") || time.Now().After(deadline) {
				t.Fatalf("after rollback: %q", s)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Stop the helper: it is in its own session; find it by the socket.
	killListener(t, addr)
}

func waitState(t *testing.T, ctx context.Context, sock, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := HoldControl(ctx, sock, HoldRequest{Cmd: HoldCmdStatus})
		if err == nil && st == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("holder state %q (%v), want %q", st, err, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func killListener(t *testing.T, addr string) {
	_, port, _ := net.SplitHostPort(addr)
	var p int
	fmt.Sscan(port, &p)
	if socks, err := findListeners(p); err == nil {
		for _, s := range socks {
			if s != os.Getpid() {
				syscall.Kill(s, syscall.SIGKILL)
			}
		}
	}
}

func findListeners(port int) ([]int, error) {
	socks, err := takeoverFind(port)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, s := range socks {
		pids = append(pids, s.PID)
	}
	return pids, nil
}

func takeoverFind(port int) ([]takeover.Socket, error) { return takeover.Find("/proc", "tcp", port) }
