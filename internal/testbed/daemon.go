package testbed

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// StartDaemon runs argv on this machine (not in a bed's host) in the
// background until the test ends, its output in DIR/NAME.log. At cleanup,
// stop (if any) runs first, then the daemon gets SIGTERM and, 5s later,
// SIGKILL; a failed test shows the log's tail.
func StartDaemon(t TB, dir, name string, stop func() error, argv ...string) *exec.Cmd {
	t.Helper()
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatalf("%v", err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if stop != nil {
			stop()
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("%s log:\n%s", name, b)
		}
	})
	return cmd
}
