package capture

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
)

// collector gathers the paths to capture, each with the reasons it is
// needed. Paths are stored canonically: every directory component is
// resolved (so /lib/x and /usr/lib/x on a merged-/usr system are one
// entry), and each symlink met on the way is kept as an entry of its own.
type collector struct {
	log      *slog.Logger
	items    map[string]*item
	dirCache map[string]string
	runtime  map[string]string // directory -> reason
	users    map[string]bool
	groups   map[string]bool
	notes    []string
	exclude  []string
	skip     map[string]bool // exact paths never captured (the output archive)
	withLogs bool
	config   []string // configuration trees (canonical)
	traced   int      // processes seen in the traced start-up
	traceErr error    // why the start-up was not traced
	acc      *accounts
	snap     *spool // when set, file bodies are snapshotted while hashed
}

type item struct {
	reasons []string
}

func newCollector(log *slog.Logger, exclude []string, withLogs bool) *collector {
	return &collector{log: log, items: map[string]*item{}, dirCache: map[string]string{}, runtime: map[string]string{},
		users: map[string]bool{}, groups: map[string]bool{}, exclude: exclude, withLogs: withLogs, skip: map[string]bool{}}
}

func (c *collector) note(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	c.notes = append(c.notes, msg)
	c.log.Debug("note", "msg", msg)
}

func (c *collector) user(name string) {
	if name != "" {
		c.users[name] = true
	}
}

func (c *collector) group(name string) {
	if name != "" {
		c.groups[name] = true
	}
}

// mark records reason for the canonical path p.
func (c *collector) mark(p, reason string) {
	it := c.items[p]
	if it == nil {
		it = &item{}
		c.items[p] = it
	}
	for _, r := range it.reasons {
		if r == reason {
			return
		}
	}
	it.reasons = append(it.reasons, reason)
}

// skipPath reports kernel and scratch file systems that are never captured.
func skipPath(p string) bool {
	for _, pre := range []string{"/proc", "/sys", "/dev", "/run/netns"} {
		if p == pre || strings.HasPrefix(p, pre+"/") {
			return true
		}
	}
	// the capture's own spool and trace scratch directories
	return strings.HasPrefix(p, filepath.Join(os.TempDir(), "migrate-capture-")) ||
		strings.HasPrefix(p, filepath.Join(os.TempDir(), "migrate-trace-"))
}

func (c *collector) excluded(p string) bool {
	if c.skip[p] {
		return true
	}
	for out := range c.skip { // the archive's temp file next to it (see Create)
		if filepath.Dir(p) == filepath.Dir(out) && strings.HasPrefix(filepath.Base(p), "."+filepath.Base(out)+".tmp-") {
			return true
		}
	}
	for _, g := range c.exclude {
		if ok, _ := filepath.Match(g, p); ok {
			return true
		}
		if ok, _ := filepath.Match(g, filepath.Base(p)); ok {
			return true
		}
		if strings.HasPrefix(p, strings.TrimSuffix(g, "/")+"/") {
			return true
		}
	}
	return false
}

// resolveDir resolves every symlink in directory d, recording each link it
// crosses (merged-/usr links get the reason "usrmerge"). It returns "" if
// d does not exist.
func (c *collector) resolveDir(d string) string {
	if d == "/" {
		return "/"
	}
	if r, ok := c.dirCache[d]; ok {
		return r
	}
	parent := c.resolveDir(filepath.Dir(d))
	r := ""
	if parent != "" {
		cur := filepath.Join(parent, filepath.Base(d))
		fi, err := os.Lstat(cur)
		switch {
		case err != nil:
		case fi.Mode()&os.ModeSymlink != 0:
			reason := "dir-link"
			if parent == "/" && usrmergeDirs[filepath.Base(d)] {
				reason = "usrmerge"
			}
			c.mark(cur, reason)
			t, err := os.Readlink(cur)
			if err == nil {
				if !filepath.IsAbs(t) {
					t = filepath.Join(parent, t)
				}
				c.dirCache[d] = "" // breaks loops
				r = c.resolveDir(filepath.Clean(t))
			}
		case fi.IsDir():
			r = cur
		}
	}
	c.dirCache[d] = r
	return r
}

var usrmergeDirs = map[string]bool{"bin": true, "sbin": true, "lib": true, "lib64": true, "lib32": true, "libx32": true}

// canonicalPath rewrites the merged-/usr prefixes (/lib/x -> /usr/lib/x)
// when / has those links. It is cheap; the collector resolves fully.
func canonicalPath(p string) string {
	for d := range usrmergeDirs {
		if rest, ok := strings.CutPrefix(p, "/"+d+"/"); ok && usrmerged(d) {
			return "/usr/" + d + "/" + rest
		}
	}
	return p
}

var (
	usrmergeMu    sync.Mutex
	usrmergeCache = map[string]bool{}
)

func usrmerged(d string) bool {
	usrmergeMu.Lock()
	defer usrmergeMu.Unlock()
	v, ok := usrmergeCache[d]
	if !ok {
		t, err := os.Readlink("/" + d)
		v = err == nil && filepath.Clean(strings.TrimPrefix(t, "/")) == "usr/"+d
		usrmergeCache[d] = v
	}
	return v
}

// add records p (absolute) with reason. A symlink is recorded and its
// target added too, with the same reason. It returns the canonical path,
// or "" when p is missing, excluded or on a skipped file system.
func (c *collector) add(p, reason string) string { return c.addDepth(p, reason, 0) }

func (c *collector) addDepth(p, reason string, depth int) string {
	if p == "" || !filepath.IsAbs(p) || depth > 16 {
		return ""
	}
	p = filepath.Clean(p)
	if p == "/" || skipPath(p) || c.excluded(p) {
		return ""
	}
	dir := c.resolveDir(filepath.Dir(p))
	if dir == "" {
		return ""
	}
	cp := filepath.Join(dir, filepath.Base(p))
	if skipPath(cp) || c.excluded(cp) {
		return ""
	}
	fi, err := os.Lstat(cp)
	if err != nil {
		return ""
	}
	c.mark(cp, reason)
	if fi.Mode()&os.ModeSymlink != 0 {
		if t, err := os.Readlink(cp); err == nil {
			if !filepath.IsAbs(t) {
				t = filepath.Join(dir, t)
			}
			c.addDepth(t, reason, depth+1)
		}
	}
	return cp
}

// addTree adds p and, if it is a directory, everything below it.
func (c *collector) addTree(p, reason string) {
	switch filepath.Clean(p) {
	case "/", "/usr", "/etc", "/var", "/home", "/srv":
		c.note("not capturing all of %s (named as %s); use --include for parts of it", p, reason)
		return
	}
	cp := c.add(p, reason)
	if cp == "" {
		return
	}
	if fi, err := os.Lstat(cp); err != nil || !fi.IsDir() {
		return
	}
	filepath.WalkDir(cp, func(q string, d os.DirEntry, err error) error {
		if err != nil {
			if os.IsPermission(err) {
				c.note("cannot read %s: %v", q, err)
			}
			return nil
		}
		if skipPath(q) || c.excluded(q) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !c.withLogs && !d.IsDir() && isLog(q) {
			c.runtimeDir(filepath.Dir(q), "runtime:log")
			return nil
		}
		c.mark(q, reason)
		if d.Type()&os.ModeSymlink != 0 {
			if t, err := os.Readlink(q); err == nil {
				if !filepath.IsAbs(t) {
					t = filepath.Join(filepath.Dir(q), t)
				}
				c.addDepth(t, reason, 1)
			}
		}
		return nil
	})
}

// addDevice records a device node the service uses.
func (c *collector) addDevice(p string) {
	fi, err := os.Lstat(p)
	if err != nil || fi.Mode()&(os.ModeDevice|os.ModeCharDevice) == 0 {
		return
	}
	c.mark(p, "device")
}

// runtimeDir records a directory that must exist when the service starts.
func (c *collector) runtimeDir(p, reason string) {
	if p == "" || !filepath.IsAbs(p) {
		return
	}
	if d := c.resolveDir(filepath.Clean(p)); d != "" {
		c.runtime[d] = reason
		c.mark(d, reason)
	}
}

// logFile records a log file: its directory as a runtime directory, and
// the file itself with --with-logs.
func (c *collector) logFile(p string) {
	if p == "" || !filepath.IsAbs(p) || strings.HasPrefix(p, "syslog:") || p == "/dev/stderr" || p == "off" {
		return
	}
	c.runtimeDir(filepath.Dir(p), "runtime:log")
	if c.withLogs {
		c.add(p, "log")
	}
}

// isLog reports paths that are logs (kept only with --with-logs).
func isLog(p string) bool {
	return strings.HasPrefix(p, "/var/log/") || strings.HasSuffix(p, ".log")
}

// addParents marks every ancestor directory of every item.
func (c *collector) addParents() {
	var ps []string
	for p := range c.items {
		ps = append(ps, p)
	}
	for _, p := range ps {
		for d := filepath.Dir(p); d != "/" && d != "."; d = filepath.Dir(d) {
			if _, ok := c.items[d]; ok {
				break
			}
			c.mark(d, "parent")
		}
	}
}

func (c *collector) sorted() []string {
	out := make([]string, 0, len(c.items))
	for p := range c.items {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

func statT(fi os.FileInfo) *syscall.Stat_t {
	st, _ := fi.Sys().(*syscall.Stat_t)
	return st
}
