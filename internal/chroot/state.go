// Package chroot runs one command chrooted into a prepared root, in its
// own mount, PID, UTS and IPC namespaces (sharing the network), under a
// small supervisor process that outlives the caller and records the
// service's pid and exit status in a state file.
//
// The process tree is: supervisor (re-exec of this binary, own session)
// → init (re-exec, PID 1 of the new PID namespace: makes mounts private,
// mounts /proc inside the root, sets the hostname, reaps) → the service,
// chrooted. When init exits the kernel kills whatever is left in the PID
// namespace and the namespace's /proc mount goes away with it.
package chroot

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/migrate-tool/migrate/internal/procstat"
)

// Spec describes the service to run. It is written as spec.json into Dir
// and read by the supervisor and init processes.
type Spec struct {
	Name     string   `json:"name"`
	Dir      string   `json:"dir"`  // state directory (outside the root)
	Root     string   `json:"root"` // the chroot
	Start    []string `json:"start"`
	Stop     []string `json:"stop,omitempty"`
	Env      []string `json:"env,omitempty"`
	Hostname string   `json:"hostname,omitempty"`
}

// Files in the state directory.
const (
	specFile  = "spec.json"
	stateFile = "state.json"
	LogFile   = "service.log"
)

// Service states.
const (
	StatusStarting = "starting"
	StatusRunning  = "running"
	StatusExited   = "exited"
	StatusStopped  = "stopped"
)

// State is what the supervisor records about its service.
type State struct {
	Status        string    `json:"status"`
	SupervisorPID int       `json:"supervisor_pid,omitempty"`
	InitPID       int       `json:"init_pid,omitempty"`
	Started       time.Time `json:"started,omitzero"`
	Exited        time.Time `json:"exited,omitzero"`
	ExitCode      int       `json:"exit_code"`
	Signal        string    `json:"signal,omitempty"`
	Stopping      bool      `json:"stopping,omitempty"`
}

// ReadState returns the state recorded in dir, with Status "stopped" if
// nothing was ever started there, and "exited" if the supervisor died
// without recording it.
func ReadState(dir string) (State, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return State{Status: StatusStopped}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("read service state: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return State{}, fmt.Errorf("decode service state: %w", err)
	}
	if (st.Status == StatusRunning || st.Status == StatusStarting) && !isSupervisor(st.SupervisorPID, dir) {
		st.Status, st.ExitCode = StatusExited, -1
	}
	return st, nil
}

// Alive reports whether the service's supervisor is running.
func (s State) Alive() bool { return s.Status == StatusRunning || s.Status == StatusStarting }

func writeState(dir string, st State) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+stateFile+".tmp-"+strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write service state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, stateFile)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write service state: %w", err)
	}
	return nil
}

// isSupervisor checks that pid is alive and is the supervisor of dir (pids
// get reused).
func isSupervisor(pid int, dir string) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	if len(b) == 0 {
		// A process in the middle of execve has no arguments yet (the
		// kernel sets them up after waking the vfork parent): the
		// supervisor just started.
		return procstat.Alive(pid)
	}
	args := strings.Split(string(b), "\x00")
	for _, a := range args {
		if a == filepath.Join(dir, specFile) {
			return procstat.Alive(pid)
		}
	}
	return false
}

// ReadSpec reads the spec stored in dir.
func ReadSpec(path string) (*Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read service spec: %w", err)
	}
	var s Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decode service spec: %w", err)
	}
	return &s, nil
}

// LogTail returns the last n lines of the service's output.
func LogTail(dir string, n int) string {
	b, err := os.ReadFile(filepath.Join(dir, LogFile))
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
