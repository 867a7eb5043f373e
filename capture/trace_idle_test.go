package capture

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// traceIdle is true once every process under the root waits for work, and
// never while one runs or sits in a timed sleep.
func TestTraceIdle(t *testing.T) {
	start := func(script string) *exec.Cmd {
		cmd := exec.Command("/bin/sh", "-c", script)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // killed as a group
		if _, err := cmd.StdinPipe(); err != nil {            // held open: read waits on it
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
		return cmd
	}
	// polls reports whether traceIdle said true within n polls 10 ms apart.
	polls := func(pid, n int) bool {
		for range n {
			if traceIdle(pid) {
				return true
			}
			time.Sleep(10 * time.Millisecond)
		}
		return false
	}

	waiting := start("(read x); :")
	if !polls(waiting.Process.Pid, 200) {
		t.Error("a tree waiting on input never counted as idle")
	}
	busy := start("(while :; do :; done) & wait")
	if polls(busy.Process.Pid, 30) {
		t.Error("a tree with a busy process counted as idle")
	}
	syscall.Kill(-busy.Process.Pid, syscall.SIGKILL) // the loop: end it now, not at cleanup
	sleeping := start("sleep 30 & wait")
	if polls(sleeping.Process.Pid, 30) {
		t.Error("a tree sleeping on a timer counted as idle")
	}
}
