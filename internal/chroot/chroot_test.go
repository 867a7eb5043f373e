package chroot

import (
	"fmt"
	"github.com/migrate-tool/migrate/internal/testenv"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadStateNothingStarted(t *testing.T) {
	st, err := ReadState(t.TempDir())
	if err != nil || st.Status != StatusStopped || st.Alive() {
		t.Fatalf("%+v %v", st, err)
	}
}

func TestReadStateDeadSupervisor(t *testing.T) {
	dir := t.TempDir()
	// A pid that is not a supervisor of dir (this test process).
	if err := writeState(dir, State{Status: StatusRunning, SupervisorPID: os.Getpid()}); err != nil {
		t.Fatal(err)
	}
	st, err := ReadState(dir)
	if err != nil || st.Status != StatusExited || st.ExitCode != -1 {
		t.Fatalf("%+v %v", st, err)
	}
}

func TestLogTail(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	for i := 1; i <= 30; i++ {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	os.WriteFile(filepath.Join(dir, LogFile), []byte(b.String()), 0o644)
	got := LogTail(dir, 3)
	if got != "line 28\nline 29\nline 30" {
		t.Fatalf("%q", got)
	}
}

func TestListeningOwnSocketsOnly(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		testenv.Skip(t, err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	mine := map[string]bool{}
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:[") {
			mine[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	if !Listening(Port{Proto: "tcp", Port: port}, mine) {
		t.Fatal("own listening socket not found")
	}
	if Listening(Port{Proto: "tcp", Port: port}, map[string]bool{}) {
		t.Fatal("someone else's socket counted")
	}
}

func TestLaunchRefusesEmptyStart(t *testing.T) {
	if err := Launch(&Spec{Name: "x", Dir: t.TempDir()}); err == nil {
		t.Fatal("launched without a start command")
	}
}
