package capture

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// traceResult is what a traced start-up used.
type traceResult struct {
	Execs   []string // executed files
	Opens   []string // files and directories opened, stat'ed or accessed successfully
	Created []string // files created (absent on the real file system)
	Procs   int      // processes traced
}

// traceTimeout bounds a traced start-up; it is killed once its trace
// stops growing for traceSettle.
var (
	traceTimeout = 20 * time.Second
	traceSettle  = 400 * time.Millisecond
	traceQuick   = 150 * time.Millisecond // once the service's TCP ports listen
)

// traceStart runs argv under strace in throwaway mount, network, PID, IPC
// and UTS namespaces whose file systems are overlays over the real ones
// (all writes go to a tmpfs), so the traced copy binds no real port and
// changes nothing on disk. addrs are the live service's listen addresses,
// put on a dummy interface so that binding them succeeds.
func traceStart(ctx context.Context, argv []string, cwd string, env []string, addrs []string, tcpPorts []int) (*traceResult, error) {
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
	work, err := os.MkdirTemp("", "migrate-trace-")
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
	script := traceScript(scratch, out, strace, argv, cwd, addrs, tcpPorts, overlayMounts())
	ctx, cancel := context.WithTimeout(ctx, traceTimeout+10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--net", "--pid", "--fork", "--ipc", "--uts",
		"--propagation", "private", "sh", "-c", script)
	cmd.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		return nil, fmt.Errorf("traced start-up: %v: %s", err, msg)
	}
	return parseTraceDir(out, cwd)
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

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// traceScript is the shell run inside the new namespaces.
func traceScript(scratch, out, strace string, argv []string, cwd string, addrs []string, tcpPorts []int, mounts []string) string {
	var b strings.Builder
	w := func(f string, a ...any) { fmt.Fprintf(&b, f+"\n", a...) }
	w("set -e")
	w("S=%s; M=$S/root", shq(scratch))
	w("mount -t tmpfs -o mode=0700 migrate-trace $S")
	w("mkdir $M")
	for i, mp := range mounts {
		target := "$M" + shq(mp)
		if mp == "/" {
			target = "$M"
		}
		w("mkdir -p $S/u%d $S/w%d", i, i)
		w("mount -t overlay migrate-trace -o lowerdir=%s,upperdir=$S/u%d,workdir=$S/w%d %s || echo 'migrate: overlay on %s failed' >&2", shq(mp), i, i, target, mp)
	}
	w("mount -t proc proc $M/proc")
	w("mount --rbind /dev $M/dev && mount --make-rslave $M/dev")
	w("mount --rbind /sys $M/sys 2>/dev/null || true")
	w("mkdir -p $M/.migrate-trace && mount --bind %s $M/.migrate-trace", shq(out))
	w("ip link set lo up")
	w("ip link add migrate0 type dummy 2>/dev/null && ip link set migrate0 up || true")
	for _, a := range addrs {
		if ip := net.ParseIP(a); ip != nil && !ip.IsLoopback() && !ip.IsUnspecified() {
			bits := "32"
			if ip.To4() == nil {
				bits = "128"
			}
			w("ip addr add %s/%s dev migrate0 2>/dev/null || true", a, bits)
		}
	}
	var q []string
	for _, a := range argv {
		q = append(q, shq(a))
	}
	if cwd == "" {
		cwd = "/"
	}
	w("set +e")
	w("chroot $M sh -c 'cd \"$1\" 2>/dev/null || cd /; shift; exec \"$@\"' sh %s %s -f -I1 -qq -s 512 -ff -o /.migrate-trace/t -e trace=%%file,%%process,chdir,fchdir -- %s </dev/null >/dev/null 2>&1 &",
		shq(cwd), shq(strace), strings.Join(q, " "))
	// Settled: the trace has not grown for traceSettle, or for traceQuick
	// once every TCP port of the live service listens in the namespace.
	w("pid=$!; prev=-1; same=0; n=0; need=%d", int(traceSettle/(50*time.Millisecond)))
	w("up() {")
	if len(tcpPorts) == 0 {
		w("  return 1")
	}
	for _, p := range tcpPorts {
		w("  grep -q ':%04X [0-9A-F:]* 0A ' /proc/net/tcp /proc/net/tcp6 2>/dev/null || return 1", p)
	}
	w("}")
	w("while [ $n -lt %d ]; do", int(traceTimeout/(50*time.Millisecond)))
	w("  kill -0 $pid 2>/dev/null || break")
	w("  s=$(cat %s/t.* 2>/dev/null | wc -c)", shq(out))
	w("  if [ \"$s\" = \"$prev\" ] && [ \"$s\" -gt 0 ]; then same=$((same+1)); else same=0; fi")
	w("  [ $same -ge $need ] && break")
	w("  [ $same -ge %d ] && up && break", int(traceQuick/(50*time.Millisecond)))
	w("  prev=$s; n=$((n+1)); sleep 0.05")
	w("done")
	w("kill -TERM $pid 2>/dev/null; exit 0")
	return b.String()
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
