package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/migrate-tool/migrate/internal/procstat"
)

// Proc is a background program running inside a host. Its stdout and
// stderr go to LogPath.
type Proc struct {
	Name    string
	LogPath string

	node    *Node
	pid     int // nsenter, in the root PID namespace
	child   int // the program itself (nsenter's child), root PID namespace
	done    chan struct{}
	waitErr error
}

// Start runs argv in the background inside the host. The process is
// stopped (SIGTERM, then SIGKILL after 5 s) when the test that started it
// ends, and in any case when the bed is torn down.
func (n *Node) Start(t TB, name string, argv ...string) *Proc {
	t.Helper()
	p, err := n.start(name, argv...)
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	t.Cleanup(func() { p.Stop() })
	return p
}

func (n *Node) start(name string, argv ...string) (*Proc, error) {
	logPath := filepath.Join(n.Dir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := n.Command(context.Background(), argv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start %s: %w", n.Name, name, err)
	}
	p := &Proc{Name: name, LogPath: logPath, node: n, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	n.bed.addProc(p)
	p.findChild()
	return p, nil
}

// findChild learns the program's PID: nsenter forks it right after
// joining the namespaces.
func (p *Proc) findChild() {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if kids := procstat.Children(p.pid); len(kids) > 0 {
			p.child = kids[0]
			return
		}
		select {
		case <-p.done:
			return
		case <-time.After(time.Millisecond):
		}
	}
}

// Pid is the program's PID in the root PID namespace (0 if it never ran).
func (p *Proc) Pid() int { return p.child }

// Done is closed when the program has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the program has exited, and how.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Signal sends sig to the program.
func (p *Proc) Signal(sig syscall.Signal) error {
	if ok, _ := p.Exited(); ok || p.child == 0 {
		return errors.New("process has exited")
	}
	return syscall.Kill(p.child, sig)
}

// Log returns what the program wrote so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

func (p *Proc) tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// Stop sends SIGTERM and waits up to 5 s for the program to exit, then
// kills its process group. It returns the exit error of a program that
// did not die of the SIGTERM.
func (p *Proc) Stop() error {
	if ok, err := p.Exited(); ok {
		return err
	}
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		var ee interface{ Sys() any }
		if errors.As(p.waitErr, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
				return nil
			}
		}
		return p.waitErr
	case <-time.After(5 * time.Second):
	}
	p.kill()
	return fmt.Errorf("%s did not stop within 5s of SIGTERM", p.Name)
}

// kill SIGKILLs the program and nsenter and waits for them.
func (p *Proc) kill() {
	if ok, _ := p.Exited(); ok {
		return
	}
	if p.child != 0 {
		syscall.Kill(p.child, syscall.SIGKILL)
	}
	syscall.Kill(-p.pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}
