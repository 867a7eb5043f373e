package chroot

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/migrate-tool/migrate/internal/procstat"
)

// Port is a socket the service is expected to listen on.
type Port struct {
	Proto string // tcp, tcp6, udp, udp6
	Port  int
}

// Listening reports whether one of the sockets in inodes is bound to
// port in this network namespace (TCP: in LISTEN state).
func Listening(p Port, inodes map[string]bool) bool {
	protos := []string{p.Proto}
	switch p.Proto {
	case "tcp", "tcp6":
		protos = []string{"tcp", "tcp6"}
	case "udp", "udp6":
		protos = []string{"udp", "udp6"}
	}
	for _, proto := range protos {
		b, err := os.ReadFile("/proc/net/" + proto)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || !inodes[f[9]] {
				continue
			}
			i := strings.LastIndexByte(f[1], ':')
			port, err := strconv.ParseUint(f[1][i+1:], 16, 32)
			if err != nil || int(port) != p.Port {
				continue
			}
			if strings.HasPrefix(proto, "udp") || f[3] == "0A" {
				return true
			}
		}
	}
	return false
}

// socketInodes returns the inodes of the sockets open in init's
// descendants (the service's processes).
func socketInodes(initPID int) map[string]bool {
	inodes := map[string]bool{}
	for _, pid := range procstat.Descendants(initPID) {
		dir := fmt.Sprintf("/proc/%d/fd", pid)
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			l, err := os.Readlink(dir + "/" + e.Name())
			if err == nil && strings.HasPrefix(l, "socket:[") {
				inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
			}
		}
	}
	return inodes
}

// Wait waits until the service in dir is up: every port listening (or,
// without ports, still running after grace), or it has exited, or the
// timeout passed. An exit or timeout is an error carrying the log tail.
func Wait(ctx context.Context, dir string, ports []Port, grace, timeout time.Duration) (State, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		st, err := ReadState(dir)
		if err != nil {
			return st, err
		}
		if !st.Alive() {
			return st, &StartError{State: st, Tail: LogTail(dir, 15)}
		}
		if st.Status == StatusRunning {
			up := len(ports) > 0 || time.Since(start) >= grace
			if len(ports) > 0 {
				inodes := socketInodes(st.InitPID)
				for _, p := range ports {
					up = up && Listening(p, inodes)
				}
			}
			if up {
				return st, nil
			}
		}
		if time.Now().After(deadline) {
			return st, &StartError{State: st, Tail: LogTail(dir, 15), Timeout: timeout}
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// StartError is a service that exited or never became ready.
type StartError struct {
	State   State
	Tail    string
	Timeout time.Duration
}

func (e *StartError) Error() string {
	var what string
	switch {
	case e.Timeout > 0:
		what = fmt.Sprintf("not listening after %s", e.Timeout)
	case e.State.Signal != "":
		what = "killed by " + e.State.Signal
	case e.State.ExitCode == 0:
		what = "exited with status 0 (the start command must stay in the foreground; a daemon that forks is killed with its namespace)"
	default:
		what = fmt.Sprintf("exited with status %d", e.State.ExitCode)
	}
	if e.Tail == "" {
		return what + " (no output)"
	}
	return what + "; last output:\n" + e.Tail
}
