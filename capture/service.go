package capture

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/migrate-tool/migrate/internal/hint"
)

// ErrNotRunning marks a known service with no running process.
var ErrNotRunning = errors.New("service not running")

// ErrUnknownService marks a name that matches no process, package or init script.
var ErrUnknownService = errors.New("unknown service")

// service is the running service being captured.
type service struct {
	name  string
	prof  *profile
	main  *Process
	procs []*Process // main first, then descendants
	ports []Port
	notes []string // findings for the manifest's notes
}

// findService identifies the service by --port or by name (profile,
// process name, executable name, package owning the executable, init
// script) and returns its main process and descendants.
func findService(opts Options, pk *packages) (*service, error) {
	all, err := allProcesses()
	if err != nil {
		return nil, err
	}
	var matched []*Process
	var prof *profile
	switch {
	case opts.Port != 0:
		matched, err = byPort(all, opts.Port)
		if err != nil {
			return nil, err
		}
		if len(matched) == 0 {
			return nil, hint.With(fmt.Errorf("nothing listens on port %d: %w", opts.Port, ErrNotRunning),
				"check the port with `ss -lntup`, or name the service with --service")
		}
	default:
		prof = profileFor(opts.Service)
		matched = byName(all, opts.Service, prof, nil)
		if len(matched) == 0 && pk.installed(opts.Service) {
			var exes []string
			for _, p := range all {
				exes = append(exes, canonicalPath(p.Exe))
			}
			pk.prefetch(exes)
			matched = byName(all, opts.Service, prof, pk.owners)
		}
		if len(matched) == 0 {
			return nil, notFound(opts.Service, prof)
		}
	}
	matched, err = sameNamespace(matched, opts)
	if err != nil {
		return nil, err
	}
	main := mainProcess(matched)
	var notes []string
	if roots := instances(matched); len(roots) > 1 {
		var ids []string
		for _, r := range roots {
			ids = append(ids, fmt.Sprint(r.PID))
		}
		notes = append(notes, fmt.Sprintf("%d instances found (PIDs %s); captured PID %d; use --port to pick another",
			len(roots), strings.Join(ids, ", "), main.PID))
	}
	if prof == nil {
		prof = profileFor(main.Comm)
		if prof.name == "generic" {
			prof = profileFor(filepath.Base(main.Exe))
		}
	}
	s := &service{name: opts.Service, prof: prof, main: main, notes: notes}
	if s.name == "" {
		s.name = prof.name
		if prof.name == "generic" {
			s.name = main.Comm
		}
	}
	s.procs = append([]*Process{main}, descendants(all, main.PID)...)
	for _, p := range s.procs {
		if err := p.readDetail(); err != nil {
			if errors.Is(err, ErrPermission) {
				return nil, hint.With(err, "run the capture as root on the source host (it reads /proc/PID/fd and maps)")
			}
			if errors.Is(err, os.ErrNotExist) && p != main {
				continue // a worker exited meanwhile
			}
			return nil, err
		}
	}
	s.ports = portsOf(s.procs, main.PID)
	return s, nil
}

func allProcesses() ([]*Process, error) {
	ids, err := pids()
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	var out []*Process
	for _, id := range ids {
		if id == self {
			continue
		}
		p, err := readBasic(id)
		if err != nil || len(p.Cmdline) == 0 { // gone, or a kernel thread
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

func byName(all []*Process, name string, prof *profile, owners func(string) []string) []*Process {
	var out []*Process
	match := func(p *Process) bool {
		names := prof.procs
		if len(names) == 0 {
			names = []string{name}
		}
		for _, n := range names {
			if p.Comm == n || filepath.Base(p.Exe) == n || (p.Exe == "" && len(p.Cmdline) > 0 && filepath.Base(p.Cmdline[0]) == n) {
				return true
			}
		}
		if owners != nil && p.Exe != "" {
			for _, o := range owners(canonicalPath(p.Exe)) {
				if o == name {
					return true
				}
			}
		}
		return false
	}
	for _, p := range all {
		if match(p) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		if d := initDaemon(name); d != "" && d != name {
			return byName(all, d, &profile{name: "generic"}, nil)
		}
	}
	return out
}

// initDaemon reads DAEMON= from /etc/init.d/NAME.
func initDaemon(name string) string {
	b, err := os.ReadFile(filepath.Join("/etc/init.d", filepath.Base(name)))
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if v, ok := strings.CutPrefix(l, "DAEMON="); ok {
			v = strings.Trim(v, `"'`)
			if !strings.Contains(v, "$") {
				return filepath.Base(v)
			}
		}
	}
	return ""
}

func notFound(name string, prof *profile) error {
	known := prof.name != "generic"
	if _, err := os.Stat(filepath.Join("/etc/init.d", filepath.Base(name))); err == nil {
		known = true
	}
	for _, d := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		if _, err := os.Stat(filepath.Join(d, filepath.Base(name))); err == nil {
			known = true
		}
	}
	if known {
		return hint.With(fmt.Errorf("service %q: %w", name, ErrNotRunning),
			"start it first, or name its process with --service NAME or its port with --port N")
	}
	return hint.With(fmt.Errorf("%w %q: no running process, package or init script by that name", ErrUnknownService, name),
		"name a running process (see `ps -e`), a package (see `dpkg -l`), or use --port N")
}

func byPort(all []*Process, port int) ([]*Process, error) {
	var out []*Process
	seenNS := map[string][]listener{}
	for _, p := range all {
		ns, _ := os.Readlink(procPath(p.PID, "ns", "net"))
		ls, ok := seenNS[ns]
		if !ok {
			ls = listeners(p.PID)
			seenNS[ns] = ls
		}
		inodes := map[uint64]bool{}
		for _, l := range ls {
			if l.Port.Port == port {
				inodes[l.inode] = true
			}
		}
		if len(inodes) == 0 {
			continue
		}
		fds, err := os.ReadDir(procPath(p.PID, "fd"))
		if err != nil {
			if errors.Is(err, os.ErrPermission) {
				return nil, hint.With(fmt.Errorf("inspect process %d (%s): %w", p.PID, p.Comm, ErrPermission),
					"run the capture as root on the source host")
			}
			continue
		}
		for _, fd := range fds {
			t, _ := os.Readlink(procPath(p.PID, "fd", fd.Name()))
			var ino uint64
			if _, err := fmt.Sscanf(t, "socket:[%d]", &ino); err == nil && inodes[ino] {
				out = append(out, p)
				break
			}
		}
	}
	return out, nil
}

// sameNamespace keeps the matches in this process's own network and mount
// namespaces if there are any there, else those of the single other
// namespace that has matches; matches spread over several other
// namespaces are ambiguous.
func sameNamespace(ps []*Process, opts Options) ([]*Process, error) {
	key := func(pid string) string {
		n, _ := os.Readlink(filepath.Join(procRoot, pid, "ns", "net"))
		m, _ := os.Readlink(filepath.Join(procRoot, pid, "ns", "mnt"))
		return n + m
	}
	self := key("self")
	groups := map[string][]*Process{}
	for _, p := range ps {
		k := key(fmt.Sprint(p.PID))
		groups[k] = append(groups[k], p)
	}
	if g, ok := groups[self]; ok {
		return g, nil
	}
	if len(groups) == 1 {
		for _, g := range groups {
			return g, nil
		}
	}
	what := opts.Service
	if opts.Port != 0 {
		what = fmt.Sprintf("port %d", opts.Port)
	}
	return nil, hint.With(fmt.Errorf("%s: found in %d other namespaces, none of them this one", what, len(groups)),
		"run the capture inside the service's namespaces (e.g. through SSH to that host, or nsenter -t PID -a)")
}

// instances returns the matched processes whose parent is not matched:
// one per independent instance of the service.
func instances(ps []*Process) []*Process {
	in := map[int]bool{}
	for _, p := range ps {
		in[p.PID] = true
	}
	var out []*Process
	for _, p := range ps {
		if !in[p.PPID] {
			out = append(out, p)
		}
	}
	return out
}

// mainProcess is the matched process whose parent is not matched (the
// master); ties go to the lowest PID.
func mainProcess(ps []*Process) *Process {
	in := map[int]bool{}
	for _, p := range ps {
		in[p.PID] = true
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].PID < ps[j].PID })
	for _, p := range ps {
		if !in[p.PPID] {
			return p
		}
	}
	return ps[0]
}

func descendants(all []*Process, pid int) []*Process {
	children := map[int][]*Process{}
	for _, p := range all {
		children[p.PPID] = append(children[p.PPID], p)
	}
	var out []*Process
	queue := []int{pid}
	for len(queue) > 0 {
		for _, c := range children[queue[0]] {
			out = append(out, c)
			queue = append(queue, c.PID)
		}
		queue = queue[1:]
	}
	return out
}

func portsOf(ps []*Process, pid int) []Port {
	var out []Port
	seen := map[Port]bool{}
	ls := listeners(pid)
	for _, p := range ps {
		for _, l := range ls {
			if p.sockets[l.inode] && !seen[l.Port] {
				seen[l.Port] = true
				out = append(out, l.Port)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Port != out[j].Port {
			return out[i].Port < out[j].Port
		}
		return out[i].Proto+out[i].Addr < out[j].Proto+out[j].Addr
	})
	return out
}
