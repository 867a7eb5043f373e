// Package procstat reads a process's /proc/PID/stat: its state, parent
// and start time, the fields the takeover, the chroot supervisor, the
// capture's trace and the test bed need; and its children.
package procstat

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Stat is what /proc/PID/stat says of a process.
type Stat struct {
	State byte   // R, S, D, Z, X, …
	PPID  int    // parent
	Start uint64 // start time in clock ticks since boot: with the pid, identifies the process
}

// Zombie reports whether the process has exited and waits to be reaped.
func (s Stat) Zombie() bool { return s.State == 'Z' || s.State == 'X' }

// Read reads /proc/PID/stat; ok is false if the process is gone.
func Read(pid int) (s Stat, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, false
	}
	return parse(string(b))
}

// ReadTask reads /proc/PID/task/TID/stat: one thread's state.
func ReadTask(pid, tid int) (s Stat, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
	if err != nil {
		return s, false
	}
	return parse(string(b))
}

// parse reads the fields after the command name, which may hold spaces
// and parentheses: field 3 (state), 4 (ppid) and 22 (starttime).
func parse(line string) (s Stat, ok bool) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return s, false
	}
	f := strings.Fields(line[i+1:])
	if len(f) < 20 || len(f[0]) != 1 {
		return s, false
	}
	s.State = f[0][0]
	s.PPID, _ = strconv.Atoi(f[1])
	s.Start, _ = strconv.ParseUint(f[19], 10, 64)
	return s, true
}

// Children returns the pids of pid's children, of all its threads
// (/proc/PID/task/TID/children); none if pid is gone.
func Children(pid int) []int {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var out []int
	for _, t := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// Descendants returns pid's children, grandchildren and so on.
func Descendants(pid int) []int {
	var out []int
	for todo := []int{pid}; len(todo) > 0; {
		kids := Children(todo[0])
		todo = append(todo[1:], kids...)
		out = append(out, kids...)
	}
	return out
}

// Alive reports whether pid runs and is not a zombie.
func Alive(pid int) bool {
	s, ok := Read(pid)
	return ok && !s.Zombie()
}
