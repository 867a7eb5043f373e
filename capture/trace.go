package capture

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/migrate-tool/migrate/internal/procstat"
)

// traceResult is what a traced start-up used.
type traceResult struct {
	Execs   []string // executed files
	Opens   []string // files and directories opened, stat'ed or accessed successfully
	Created []string // files created (absent on the real file system)
	Procs   int      // processes traced
	// Unsettled says what was still running when the trace was ended at
	// traceTimeout (empty when it settled): the start-up may use files
	// later that the capture then lacks.
	Unsettled string
}

// traceTimeout bounds a traced start-up. It is ended once its trace
// stops growing for traceSettle, or for traceQuick once every TCP port of
// the live service listens inside the namespace (the start-up is then
// complete: what follows is the service serving). The trace is watched
// every tracePoll.
var (
	traceTimeout = 20 * time.Second
	traceSettle  = 400 * time.Millisecond
	traceQuick   = 100 * time.Millisecond
	// traceIdleQuiet is the quiet enough once every traced process waits
	// for work (see traceIdle).
	traceIdleQuiet = 20 * time.Millisecond
	tracePoll      = 10 * time.Millisecond
)

// traceStart runs argv under strace in throwaway mount, network, PID, IPC
// and UTS namespaces whose file systems are overlays over the real ones
// (all writes go to a tmpfs), so the traced copy binds no real port and
// changes nothing on disk. addrs are the live service's listen addresses,
// put on its lo so that binding them succeeds. Its scratch
// files go into a new directory in dir ("" for $TMPDIR).
func traceStart(ctx context.Context, dir string, argv []string, cwd string, env []string, addrs []string, tcpPorts []int) (*traceResult, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("tracing the start-up needs root (namespaces and overlay mounts)")
	}
	strace, err := exec.LookPath("strace")
	if err != nil {
		return nil, fmt.Errorf("strace not installed (apt-get install strace)")
	}
	if len(argv) == 0 || argv[0] == "" {
		return nil, fmt.Errorf("no start command known")
	}
	work, err := os.MkdirTemp(dir, "migrate-trace-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	out := filepath.Join(work, "out")
	scratch := filepath.Join(work, "scratch")
	if err := os.Mkdir(out, 0o700); err != nil {
		return nil, err
	}
	if err := os.Mkdir(scratch, 0o700); err != nil {
		return nil, err
	}
	// A trace that produced nothing (strace or the chroot failed at once)
	// is tried once more, without --seccomp-bpf (which strace before 5.3
	// rejects); the second failure says what strace printed.
	setup := &traceSetup{Scratch: scratch, Out: out, Mounts: overlayMounts(), Addrs: addrs, Strace: strace,
		Seccomp: true, Argv: argv, Cwd: cwd}
	for try := 1; ; try++ {
		timedOut, err := runTraceInit(ctx, setup, env, out, tcpPorts)
		if err != nil {
			return nil, err
		}
		res, err := parseTraceDir(out, cwd)
		if err == nil {
			if timedOut {
				res.Unsettled = lastActivity(out)
			}
			return res, nil
		}
		if try == 2 || ctx.Err() != nil {
			b, _ := os.ReadFile(filepath.Join(out, "stderr"))
			if msg := lastLines(string(b), 3); msg != "" {
				err = fmt.Errorf("%w (it printed: %s)", err, msg)
			}
			return nil, err
		}
		for _, d := range []string{out, scratch} {
			os.RemoveAll(d)
			if err := os.Mkdir(d, 0o700); err != nil {
				return nil, err
			}
		}
		setup.Seccomp = false
	}
}

// lastLines returns the last n non-empty lines of s, joined by " | ".
func lastLines(s string, n int) string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return strings.Join(out, " | ")
}

// lastActivity names the trace file written last and its last line: what
// the start-up was still doing when its trace was ended.
func lastActivity(dir string) string {
	files, _ := filepath.Glob(filepath.Join(dir, "t.*"))
	var last string
	var when time.Time
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil && fi.ModTime().After(when) {
			last, when = f, fi.ModTime()
		}
	}
	if last == "" {
		return "no trace written"
	}
	b, _ := os.ReadFile(last)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	line := lines[len(lines)-1]
	if len(line) > 200 {
		line = line[:200] + "…"
	}
	return fmt.Sprintf("pid %s: %s", strings.TrimPrefix(filepath.Ext(last), "."), line)
}

// runTraceInit runs the trace in new namespaces (see traceInit) and ends
// it once the trace written to out has settled (see watchTrace).
func runTraceInit(ctx context.Context, setup *traceSetup, env []string, out string, tcpPorts []int) (timedOut bool, _ error) {
	cmd, stop, stderr, err := startTraceInit(setup, env)
	if err != nil {
		return false, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ctx, cancel := context.WithTimeout(ctx, traceTimeout+10*time.Second)
	defer cancel()
	err = watchTrace(ctx, out, cmd.Process.Pid, tcpPorts, exited)
	defer stop.Close()
	switch err {
	case nil, errTraceTimeout:
		// Settled, timed out or cancelled: the whole namespace goes at
		// once with its first process. strace writes its files as it
		// goes, so nothing is lost that a gentler end would have kept.
		timedOut = err == errTraceTimeout
		cmd.Process.Kill()
		<-exited
		if err = ctx.Err(); err != nil {
			return timedOut, fmt.Errorf("traced start-up: %w", err)
		}
		return timedOut, nil
	case errTraceDone:
		return false, nil
	}
	msg := strings.TrimSpace(stderr.String())
	if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
		msg = msg[i+1:]
	}
	return false, fmt.Errorf("traced start-up: %v: %s", err, msg)
}

// watchTrace returns once the trace in dir has settled (see traceSettle,
// traceQuick), the traced command has ended on its own, or traceTimeout
// has passed; it returns the command's error only if the command ended
// on its own (then exited has been drained). initPID is the trace's first
// process (see traceInit).
func watchTrace(ctx context.Context, dir string, initPID int, tcpPorts []int, exited <-chan error) error {
	tick := time.NewTicker(tracePoll)
	defer tick.Stop()
	deadline := time.After(traceTimeout)
	var prev int64 = -1
	var quiet time.Time // since when the trace has not grown
	for {
		select {
		case err := <-exited:
			if err == nil {
				err = errTraceDone
			}
			return err
		case <-ctx.Done():
			return nil
		case <-deadline:
			return errTraceTimeout
		case now := <-tick.C:
			n := traceSize(dir)
			if n != prev || n == 0 {
				prev, quiet = n, now
				continue
			}
			q := now.Sub(quiet)
			if q >= traceSettle {
				return nil
			}
			// Once the service listens on its ports, the start-up is over
			// when every process of it sleeps waiting for work (after a
			// short quiet, so strace has written what it saw), or else
			// after traceQuick.
			if q >= traceIdleQuiet && len(tcpPorts) > 0 && listening(initPID, tcpPorts) &&
				(q >= traceQuick || traceIdle(initPID)) {
				return nil
			}
		}
	}
}

// errTraceDone marks a traced command that ended by itself; it is not an
// error to the caller (traceStart ignores it).
var errTraceDone = errors.New("traced command ended")

// errTraceTimeout marks a trace ended at traceTimeout, not settled.
var errTraceTimeout = errors.New("traced start-up did not settle")

// traceSize is the total size of the strace output files in dir.
func traceSize(dir string) int64 {
	des, _ := os.ReadDir(dir)
	var n int64
	for _, de := range des {
		if fi, err := de.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// traceIdle reports whether every thread of the descendants of root (the
// trace's first process, whose own runtime threads do not count: strace
// and the traced service) sleeps interruptibly, and none in a timed sleep:
// the service waits for connections or signals, nothing is being done or
// paused. A thread running, in disk wait, stopped for strace, or a zombie
// not yet reaped all mean the start-up is still under way; so does a root
// without descendants (not started yet, or ending).
func traceIdle(root int) bool {
	pids := procstat.Descendants(root)
	if len(pids) == 0 || len(pids) > 4096 { // a fork bomb is not idle
		return false
	}
	for _, pid := range pids {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return false // gone meanwhile: something is still changing
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err == nil && !taskSleeps(pid, tid) {
				return false
			}
		}
	}
	return true
}

// taskSleeps reports whether a thread sleeps interruptibly in a system
// call other than nanosleep/clock_nanosleep (a start script's `sleep`).
func taskSleeps(pid, tid int) bool {
	st, ok := procstat.ReadTask(pid, tid)
	if !ok || st.State != 'S' {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/syscall", pid, tid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return false
	}
	nr, err := strconv.Atoi(f[0])
	if err != nil {
		return false // "running"
	}
	return !timedSleep[nr]
}

// timedSleep holds the system calls of a timed sleep.
var timedSleep = map[int]bool{unix.SYS_NANOSLEEP: true, unix.SYS_CLOCK_NANOSLEEP: true}

// listening reports whether every TCP port in ports listens in the
// network namespace of pid.
func listening(pid int, ports []int) bool {
	up := map[int]bool{}
	for _, l := range listeners(pid) {
		if strings.HasPrefix(l.Proto, "tcp") {
			up[l.Port.Port] = true
		}
	}
	for _, p := range ports {
		if !up[p] {
			return false
		}
	}
	return true
}

// overlayMounts lists the mount points (parents first) of real file
// systems to cover with overlays: everything except kernel file systems.
func overlayMounts() []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return []string{"/"}
	}
	skipFS := map[string]bool{"proc": true, "sysfs": true, "devtmpfs": true, "devpts": true, "cgroup": true, "cgroup2": true,
		"mqueue": true, "debugfs": true, "tracefs": true, "securityfs": true, "pstore": true, "bpf": true, "fusectl": true,
		"configfs": true, "hugetlbfs": true, "autofs": true, "binfmt_misc": true, "nsfs": true, "overlay": false}
	var out []string
	seen := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(l, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 1 {
			continue
		}
		mp := unescapeMount(f[4])
		if skipFS[g[0]] || skipPath(mp) || seen[mp] || mp == "/tmp" || strings.HasPrefix(mp, "/tmp/") {
			continue // kernel file systems, and /tmp where the trace's own scratch lives
		}
		seen[mp] = true
		out = append(out, mp)
	}
	sort.Slice(out, func(i, j int) bool { return strings.Count(out[i], "/") < strings.Count(out[j], "/") || out[i] == "/" })
	if len(out) == 0 || out[0] != "/" {
		out = append([]string{"/"}, out...)
	}
	return out
}

// netip returns a for `ip addr add` (with its prefix length), or "" for
// an address that needs nothing (loopback, any, not an IP).
func netip(a string) string {
	ip := net.ParseIP(a)
	switch {
	case ip == nil || ip.IsLoopback() || ip.IsUnspecified():
		return ""
	case ip.To4() == nil:
		return a + "/128"
	}
	return a + "/32"
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// procState is the root and working directory of a traced process.
type procState struct{ root, cwd string }

func (s procState) resolve(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Join(s.root, p)
	}
	return filepath.Join(s.cwd, p)
}

// parseTraceDir reads strace -ff output files (prefix.PID), following each
// process's root and working directory from its parent at fork time.
func parseTraceDir(dir, cwd string) (*traceResult, error) {
	files, _ := filepath.Glob(filepath.Join(dir, "t.*"))
	byPID := map[int]string{}
	var ids []int
	for _, f := range files {
		if id, err := strconv.Atoi(strings.TrimPrefix(filepath.Ext(f), ".")); err == nil {
			byPID[id] = f
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("traced start-up produced no trace")
	}
	sort.Ints(ids)
	if cwd == "" {
		cwd = "/"
	}
	res := &traceResult{}
	seen := map[string]bool{}
	state := map[int]procState{ids[0]: {root: "/", cwd: cwd}}
	queue := []int{ids[0]}
	done := map[int]bool{}
	for len(queue) > 0 || len(done) < len(ids) {
		if len(queue) == 0 { // an orphan we did not see forked
			for _, id := range ids {
				if !done[id] {
					queue = append(queue, id)
					break
				}
			}
		}
		id := queue[0]
		queue = queue[1:]
		if done[id] {
			continue
		}
		done[id] = true
		st, ok := state[id]
		if !ok {
			st = procState{root: "/", cwd: cwd}
		}
		children := parseTraceFile(byPID[id], st, res, seen)
		for child, cs := range children {
			if _, ok := state[child]; !ok {
				state[child] = cs
			}
			queue = append(queue, child)
		}
		res.Procs++
	}
	return res, nil
}

func parseTraceFile(path string, st procState, res *traceResult, seen map[string]bool) map[int]procState {
	children := map[int]procState{}
	f, err := os.Open(path)
	if err != nil {
		return children
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		call, args, ret, ok := splitSyscall(sc.Text())
		if !ok || ret < 0 {
			continue
		}
		switch call {
		case "clone", "clone3", "fork", "vfork":
			if ret > 0 {
				children[int(ret)] = st
			}
			continue
		case "chdir":
			if p, ok := firstString(args); ok {
				st.cwd = st.resolve(p)
			}
			continue
		case "chroot":
			if p, ok := firstString(args); ok {
				st.root = st.resolve(p)
			}
			continue
		}
		p, ok := firstString(args)
		if !ok || p == "" {
			continue
		}
		if !strings.HasPrefix(p, "/") && !strings.HasPrefix(args, "AT_FDCWD") && !strings.HasPrefix(args, `"`) {
			continue // relative to a directory fd we do not track
		}
		full := st.resolve(p)
		if strings.HasPrefix(full, "/.migrate-trace") || strings.HasPrefix(full, "/tmp/") {
			continue
		}
		key := call + " " + full
		if seen[key] {
			continue
		}
		seen[key] = true
		switch {
		case call == "execve" || call == "execveat":
			res.Execs = append(res.Execs, full)
		case strings.Contains(args, "O_CREAT") || call == "mkdir" || call == "mkdirat":
			if _, err := os.Lstat(full); err != nil {
				res.Created = append(res.Created, full)
			} else {
				res.Opens = append(res.Opens, full)
			}
		default:
			res.Opens = append(res.Opens, full)
		}
	}
	return children
}

// splitSyscall splits an strace line "name(args) = ret ..." .
func splitSyscall(l string) (name, args string, ret int64, ok bool) {
	i := strings.IndexByte(l, '(')
	j := strings.LastIndex(l, ") = ")
	if i <= 0 || j < i {
		return "", "", 0, false
	}
	name, args = l[:i], l[i+1:j]
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return "", "", 0, false
		}
	}
	r := strings.Fields(l[j+4:])
	if len(r) == 0 {
		return "", "", 0, false
	}
	v, err := strconv.ParseInt(r[0], 0, 64)
	if err != nil {
		return name, args, 0, r[0] != "?" && !strings.HasPrefix(r[0], "-")
	}
	return name, args, v, true
}

// firstString returns the first C string argument, unescaped.
func firstString(args string) (string, bool) {
	i := strings.IndexByte(args, '"')
	if i < 0 {
		return "", false
	}
	var b strings.Builder
	for j := i + 1; j < len(args); j++ {
		c := args[j]
		switch {
		case c == '"':
			return b.String(), true
		case c == '\\' && j+1 < len(args):
			j++
			switch e := args[j]; e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'x':
				if j+2 < len(args) {
					if v, err := strconv.ParseUint(args[j+1:j+3], 16, 8); err == nil {
						b.WriteByte(byte(v))
						j += 2
					}
				}
			default:
				if e >= '0' && e <= '7' {
					k := j
					for k < len(args) && k < j+3 && args[k] >= '0' && args[k] <= '7' {
						k++
					}
					v, _ := strconv.ParseUint(args[j:k], 8, 8)
					b.WriteByte(byte(v))
					j = k - 1
				} else {
					b.WriteByte(e)
				}
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", false
}
