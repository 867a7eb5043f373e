package migrate

import (
	"context"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/internal/procstat"
	"github.com/migrate-tool/migrate/internal/takeover"
)

// startTree starts sh running script and returns the shell's pid once its
// children (one pid per line on stdout) are up.
func startTree(t *testing.T, script string, children int) (*exec.Cmd, []int) {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var pids []int
	buf := make([]byte, 4096)
	var got string
	for len(pids) < children {
		n, err := out.Read(buf)
		if err != nil {
			t.Fatalf("reading child pids: %v", err)
		}
		got += string(buf[:n])
		pids = pids[:0]
		for _, f := range strings.Fields(got) {
			p, _ := strconv.Atoi(f)
			pids = append(pids, p)
		}
	}
	go cmd.Wait() // reap the shell so it does not linger as a zombie
	return cmd, pids
}

func alive(pid int) bool {
	return procstat.Alive(pid)
}

// The service's children that outlive its main process are waited for: a
// child still finishing its work (an smtpd in a session) ends by itself
// before the timeout and is not signalled.
func TestStopGracefullyWaitsForOrphans(t *testing.T) {
	// The child ignores SIGTERM and ends on its own after 600ms.
	cmd, kids := startTree(t, `(trap '' TERM; sleep 0.6) & echo $!; wait`, 1)
	start := time.Now()
	pids, err := stopGracefully(context.Background(), stopRequest{socks: []takeover.Socket{{PID: cmd.Process.Pid}}, signal: "TERM", timeout: 10 * time.Second, log: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if took < 500*time.Millisecond || took > 5*time.Second {
		t.Errorf("stop took %v; want it to wait for the orphan (~600ms) and no longer", took)
	}
	if !containsAll(pids, append([]int{cmd.Process.Pid}, kids...)) {
		t.Errorf("stopped pids %v, want the shell %d and its child %v", pids, cmd.Process.Pid, kids)
	}
}

// A descendant that will not stop is sent SIGTERM, then SIGKILL, after the
// timeout.
func TestStopGracefullyEscalates(t *testing.T) {
	cmd, kids := startTree(t, `(trap '' TERM; sleep 30) & echo $!; sleep 30 & echo $!; wait`, 2)
	start := time.Now()
	if _, err := stopGracefully(context.Background(), stopRequest{socks: []takeover.Socket{{PID: cmd.Process.Pid}}, signal: "TERM", timeout: 300 * time.Millisecond, log: io.Discard}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("stop took %v", took)
	}
	for _, k := range kids {
		if alive(k) {
			t.Errorf("descendant %d still runs after the stop", k)
		}
	}
}

func TestStopGracefullyBadSignal(t *testing.T) {
	_, err := stopGracefully(context.Background(), stopRequest{socks: []takeover.Socket{{PID: 1 << 30}}, signal: "BOGUS", timeout: time.Second, log: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "unknown stop signal") {
		t.Fatalf("err = %v", err)
	}
}

func TestReadProcStatReusedPid(t *testing.T) {
	cmd, _ := startTree(t, `sleep 30 & echo $!; wait`, 1)
	tree := newProcTree(cmd.Process.Pid, nil)
	if len(tree.alive()) != 2 {
		t.Fatalf("tree %v, want the shell and its sleep", tree.alive())
	}
	// A pid recorded with another start time is another process.
	tree.procs[cmd.Process.Pid]++
	for _, p := range tree.alive() {
		if p == cmd.Process.Pid {
			t.Errorf("pid %d counted alive with a different start time", p)
		}
	}
}

func containsAll(have, want []int) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}
