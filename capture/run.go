package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/migrate-tool/migrate/internal/elfdep"
	"github.com/migrate-tool/migrate/internal/hint"
)

// Trace modes.
const (
	TraceAuto    = ""        // trace when root and strace allow it, else note and continue
	TraceOff     = "off"     // never trace
	TraceRequire = "require" // fail if the start-up cannot be traced
)

// Options say what to capture. Service or Port names the service.
type Options struct {
	Service  string    `json:"service,omitempty"` // package, process, profile or init script name
	Port     int       `json:"port,omitempty"`    // or: the port it listens on
	Host     string    `json:"host,omitempty"`    // label recorded in the manifest (default: hostname)
	Since    *Manifest `json:"since,omitempty"`   // base manifest: write a delta against it
	WithLogs bool      `json:"with_logs,omitempty"`
	Include  []string  `json:"include,omitempty"` // extra paths (trees) to capture
	Exclude  []string  `json:"exclude,omitempty"` // globs (full path or base name) or path prefixes to leave out
	Trace    string    `json:"trace,omitempty"`   // TraceAuto, TraceOff or TraceRequire
	// Stopped says the service no longer runs (a final sync): with Since,
	// the delta comes from Rescan instead of the live process.
	Stopped bool `json:"stopped,omitempty"`
	// BaseDigest, with Since, is recorded as the delta's base instead of
	// Since's own digest: the manifest the target root holds when Since is
	// the full capture with later deltas applied (see Apply).
	BaseDigest string `json:"base_digest,omitempty"`
	Output     string `json:"-"` // archive path, never captured itself
	// CheckFrames has every compressed frame decoded again and compared
	// with its input as it is made: for a caller that writes the stream
	// without decoding it itself (a local capture, see Fetch).
	CheckFrames bool `json:"check_frames,omitempty"`

	Logger *slog.Logger `json:"-"`

	spool *spool // set by Run: snapshot bodies while hashing
}

// docPrefixes are package paths left out: documentation is not needed to run.
var docPrefixes = []string{"/usr/share/doc/", "/usr/share/man/", "/usr/share/info/", "/usr/share/lintian/", "/usr/share/bug/"}

// alwaysFiles are small system files a chrooted service commonly needs
// beyond its libraries (see TESTBED.md's soft misses).
var alwaysFiles = []string{"/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/hosts", "/etc/host.conf",
	"/etc/localtime", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ssl/openssl.cnf", "/etc/mime.types", "/etc/services",
	"/etc/protocols", "/etc/resolv.conf", "/etc/os-release"}

var alwaysDevices = []string{"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"}

// Collect identifies the running service and builds its manifest, hashing
// every file. Nothing is written. With opts.Since the result is a delta.
func Collect(ctx context.Context, opts Options) (*Manifest, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Stopped && opts.Since != nil {
		return Rescan(ctx, opts.Since, opts)
	}
	if opts.Service == "" && opts.Port == 0 {
		return nil, hint.With(errors.New("no service named"), "give --service NAME or --port N")
	}
	start := time.Now()
	log := opts.Logger
	c := newCollector(log, opts.Exclude, opts.WithLogs)
	c.snap = opts.spool
	if opts.Output != "" {
		if abs, err := filepath.Abs(opts.Output); err == nil {
			c.skip[abs] = true
		}
	}
	pk := openPackages(c)
	s, err := findService(opts, pk)
	if err != nil {
		return nil, err
	}
	log.Debug("service found", "service", s.name, "profile", s.prof.name, "pid", s.main.PID, "procs", len(s.procs), "took", time.Since(start))
	c.acc = readAccounts()
	for _, n := range s.notes {
		c.note("%s", n)
	}
	startArgv := s.prof.start(s)
	traced := make(chan traceOutcome, 1)
	scratch := "" // the trace's scratch: in the spool, so that /tmp's mtime stays as captured
	if c.snap != nil {
		scratch = c.snap.dir
	}
	go func() { traced <- runTrace(ctx, opts.Trace, s, startArgv, scratch) }()
	c.fromProcesses(s)
	c.fromPackages(pk, s)
	c.fromProfile(s)
	prefetched := func() {}
	switch { // copy (and compress) what is known while the start-up is traced
	case c.snap != nil && opts.Trace != TraceOff && opts.Since == nil:
		prefetched = c.snap.speculate(ctx, c, opts.Include)
	case c.snap != nil:
		prefetched = c.snap.prefetch(ctx, c.sorted())
	}
	if err := c.applyTrace(<-traced, opts.Trace); err != nil {
		return nil, err
	}
	c.addFixed(opts.Include)
	c.elfClosure()
	log.Debug("paths collected", "n", len(c.items), "took", time.Since(start))
	acc := c.acc
	c.addParents()
	pk.prefetch(c.sorted())
	prefetched()
	es, err := c.entries(ctx, acc, pk.owner)
	if err != nil {
		return nil, err
	}
	m := &Manifest{Version: ManifestVersion, Kind: KindFull, Host: opts.Host, Service: s.name, Created: time.Now().UTC(),
		Entries: compact(es), Start: startArgv, Stop: s.prof.stop(s), Ports: s.ports}
	c.markOrigins(m, pk)
	c.finish(m, s, acc, pk)
	log.Debug("manifest built", "entries", len(m.Entries), "took", time.Since(start))
	if opts.Since != nil {
		return rebase(Delta(opts.Since, m))(opts.BaseDigest)
	}
	return m, nil
}

// fromProfile adds the service's configuration trees and the data its
// configuration names.
func (c *collector) fromProfile(s *service) {
	for _, t := range s.prof.config(s) {
		if cp := c.add(t, "config"); cp != "" {
			c.config = append(c.config, cp)
			c.addTree(cp, "config")
		}
	}
	s.prof.data(c, s)
}

// addFixed adds --include trees and what every chroot needs: small system
// files, the merged-/usr links and the common device nodes.
func (c *collector) addFixed(include []string) {
	for _, p := range include {
		c.addTree(p, "include")
	}
	for _, p := range alwaysFiles {
		c.add(p, "system")
	}
	for d := range usrmergeDirs {
		if usrmerged(d) {
			c.mark("/"+d, "usrmerge")
		}
	}
	for _, p := range alwaysDevices {
		c.addDevice(p)
	}
}

// fromProcesses adds what /proc shows: executables, mapped files (NSS and
// dlopen'ed modules), open files and devices, working directories.
func (c *collector) fromProcesses(s *service) {
	for _, p := range s.procs {
		c.add(p.Exe, "exe")
		for _, m := range p.Maps {
			c.add(m, fmt.Sprintf("mapped:%s", p.Comm))
		}
		for _, f := range p.Files {
			switch {
			case strings.HasPrefix(f, "/dev/"):
				c.addDevice(f)
			case isLog(f):
				c.logFile(f)
			default:
				c.add(f, "proc-open")
			}
		}
		if p.Root != "" && p.Root != "/" {
			c.note("process %d (%s) runs chrooted in %s", p.PID, p.Comm, p.Root)
		}
		if u := c.acc.uname[p.UID]; u != "" {
			c.user(u)
		}
	}
}

// fromPackages adds the files of the service's own packages (without
// documentation) and classifies its conffiles. The service's packages are
// the profile's that are installed and those owning its executable; the
// latter are looked for in every package's list only when the former's
// lists, read here anyway, lack it (the full search would hold up the
// start of the collection until every list is read).
func (c *collector) fromPackages(pk *packages, s *service) {
	type pkgFiles struct {
		files []string
		conf  map[string]bool
	}
	got := map[string]pkgFiles{}
	read := func(n string) {
		if _, ok := got[n]; !ok {
			files, conf := pk.files(n)
			got[n] = pkgFiles{files, conf}
		}
	}
	for _, n := range s.prof.packages {
		if pk.installed(n) {
			read(n)
		}
	}
	if s.main.Exe != "" {
		exe := spellings(canonicalPath(s.main.Exe))
		listed := false
		for _, g := range got {
			listed = listed || slices.ContainsFunc(g.files, func(f string) bool { return slices.Contains(exe, f) })
		}
		if !listed {
			for _, o := range pk.owners(exe[0]) {
				read(o)
			}
		}
	}
	list := slices.Sorted(maps.Keys(got))
	docs := 0
	for _, n := range list {
		files, conf := got[n].files, got[n].conf
		for _, f := range files {
			if hasAnyPrefix(f+"/", docPrefixes) {
				docs++
				continue
			}
			c.add(f, "package:"+n)
		}
		for path, changed := range conf {
			cp := c.add(path, "package:"+n)
			if cp == "" {
				c.note("conffile %s of %s was removed by the admin", path, n)
			} else if changed {
				c.mark(cp, "conffile-changed")
			}
		}
	}
	if docs > 0 {
		c.note("left out %d documentation files of %s", docs, strings.Join(list, ", "))
	}
}

func hasAnyPrefix(s string, ps []string) bool {
	for _, p := range ps {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

type traceOutcome struct {
	res *traceResult
	err error
}

// runTrace runs the start-up under strace in throwaway namespaces (see
// traceStart), with its scratch files in dir ("" for $TMPDIR). It runs
// concurrently with the rest of the collection.
func runTrace(ctx context.Context, mode string, s *service, argv []string, dir string) traceOutcome {
	if mode == TraceOff {
		return traceOutcome{}
	}
	var addrs []string
	var tcp []int
	for _, p := range s.ports {
		addrs = append(addrs, p.Addr)
		if strings.HasPrefix(p.Proto, "tcp") {
			tcp = append(tcp, p.Port)
		}
	}
	res, err := traceStart(ctx, dir, argv, s.main.Cwd, s.main.Env, addrs, tcp)
	return traceOutcome{res, err}
}

// applyTrace adds the executed and opened files of a traced start-up;
// without a trace it notes why (or fails, with --trace require).
func (c *collector) applyTrace(t traceOutcome, mode string) error {
	if mode == TraceOff {
		c.note("start-up not traced (--trace off)")
		return nil
	}
	if t.err != nil {
		if mode == TraceRequire {
			return hint.With(t.err, "run the capture as root with strace installed, or use --trace off")
		}
		c.note("start-up not traced: %v; relying on /proc and the package database", t.err)
		c.traceErr = t.err
		return nil
	}
	res := t.res
	if res.Unsettled != "" {
		c.note("the traced start-up was still active after %v (%s): files it uses later may be missing; check the service on the target", traceTimeout, res.Unsettled)
	}
	c.log.Debug("traced start-up", "procs", res.Procs, "execs", len(res.Execs), "opens", len(res.Opens))
	c.traced = res.Procs
	for _, p := range res.Execs {
		if cp := c.add(p, "trace:exec"); cp != "" {
			c.shebang(cp)
		}
	}
	for _, p := range res.Opens {
		switch {
		case strings.HasPrefix(p, "/dev/"):
			c.addDevice(p)
		case isLog(p):
			c.logFile(p)
		default:
			if fi, err := os.Stat(p); err == nil && fi.IsDir() {
				c.add(p, "trace:dir")
			} else {
				c.add(p, "trace:open")
			}
		}
	}
	for _, p := range res.Created {
		if !strings.HasPrefix(p, "/dev/") && !skipPath(p) {
			c.runtimeDir(filepath.Dir(p), "runtime:created")
		}
	}
	return nil
}

// shebang adds the interpreter of a script.
func (c *collector) shebang(p string) {
	f, err := os.Open(p)
	if err != nil {
		return
	}
	defer f.Close()
	b := make([]byte, 256)
	n, _ := f.Read(b)
	if n < 3 || string(b[:2]) != "#!" {
		return
	}
	line, _, _ := strings.Cut(string(b[2:n]), "\n")
	if fs := strings.Fields(line); len(fs) > 0 {
		c.add(fs[0], "shebang:"+p)
	}
}

// elfClosure adds the shared-library closure (and loader) of every
// collected executable and library.
func (c *collector) elfClosure() {
	var roots []string
	for p := range c.items {
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if fi.Mode()&0o111 != 0 || strings.Contains(filepath.Base(p), ".so") {
			roots = append(roots, p)
		}
	}
	sort.Strings(roots)
	r := elfdep.NewResolver()
	cl := r.Closure(roots)
	for _, d := range cl.Deps {
		reason := "elf-needed:" + d.NeededBy[0]
		if d.Interp {
			reason = "elf-interp:" + d.NeededBy[0]
		}
		c.add(d.Path, reason)
	}
	for name, by := range cl.Missing {
		c.note("library %s needed by %s not found", name, by)
	}
}

// markOrigins adds "admin-added" to files in configuration trees that no
// package owns.
func (c *collector) markOrigins(m *Manifest, pk *packages) {
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Package != "" || e.Type == TypeDir || !pk.ok {
			continue
		}
		for _, t := range c.config {
			if strings.HasPrefix(e.Path, t+"/") {
				e.Reasons = append(e.Reasons, "admin-added")
				break
			}
		}
	}
}

// finish fills accounts, runtime directories, packages, host facts and notes.
func (c *collector) finish(m *Manifest, s *service, acc *accounts, pk *packages) {
	uids, gids := map[int]bool{}, map[int]bool{}
	for _, p := range s.procs {
		uids[p.UID], gids[p.GID] = true, true
	}
	for _, e := range m.Entries {
		uids[e.UID], gids[e.GID] = true, true
	}
	for n := range c.users {
		if u, ok := acc.users[n]; ok {
			uids[u.UID], gids[u.GID] = true, true
		} else {
			c.note("user %s named by the configuration does not exist", n)
		}
	}
	for n := range c.groups {
		if g, ok := acc.groups[n]; ok {
			gids[g.GID] = true
		}
	}
	for _, u := range acc.users {
		if uids[u.UID] && acc.uname[u.UID] == u.Name {
			m.Users = append(m.Users, u)
			gids[u.GID] = true
		}
	}
	for _, g := range acc.groups {
		if gids[g.GID] && acc.gname[g.GID] == g.Name {
			m.Groups = append(m.Groups, g)
		}
	}
	sort.Slice(m.Users, func(i, j int) bool { return m.Users[i].UID < m.Users[j].UID })
	sort.Slice(m.Groups, func(i, j int) bool { return m.Groups[i].GID < m.Groups[j].GID })
	for d := range c.runtime {
		fi, err := os.Stat(d)
		if err != nil {
			continue
		}
		st := statT(fi)
		dir := Dir{Path: d, Mode: uint32(fi.Mode().Perm())}
		if st != nil {
			dir.Mode, dir.UID, dir.GID = st.Mode&0o7777, int(st.Uid), int(st.Gid)
		}
		dir.User, dir.Group = acc.uname[dir.UID], acc.gname[dir.GID]
		m.RuntimeDirs = append(m.RuntimeDirs, dir)
	}
	sort.Slice(m.RuntimeDirs, func(i, j int) bool { return m.RuntimeDirs[i].Path < m.RuntimeDirs[j].Path })
	m.Packages = pk.used(m.Entries)
	m.OS, m.Arch, m.Kernel = osRelease(), runtime.GOARCH, kernelRelease()
	if m.Host == "" {
		m.Host, _ = os.Hostname()
	}
	m.Notes = append(m.Notes, c.notes...)
}

func osRelease() string {
	b, _ := os.ReadFile("/etc/os-release")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

func kernelRelease() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

// Run collects the service and writes its archive to w; it returns the
// manifest written. Every file is read once: into a spool (a private temp
// directory on this host) while its sha256 is computed, so the archive
// holds exactly the bytes the manifest describes even if the live file
// changes meanwhile (a file changing during its own read is re-read, then
// flagged in the notes).
func Run(ctx context.Context, opts Options, w io.Writer) (*Manifest, error) {
	sp, err := newSpool()
	if err != nil {
		return nil, err
	}
	defer sp.close()
	opts.spool = sp
	if opts.CheckFrames {
		if sp.check, err = newFrameChecker(runtime.GOMAXPROCS(0)); err != nil {
			return nil, err
		}
	}
	m, err := Collect(ctx, opts)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := writeArchive(w, m, sp.open, false, sp.pre, sp.check); err != nil {
		return nil, fmt.Errorf("send archive: %w", err)
	}
	if opts.Logger != nil {
		opts.Logger.Debug("archive written", "took", time.Since(start))
	}
	return m, nil
}
