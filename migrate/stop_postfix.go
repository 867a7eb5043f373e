package migrate

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/migrate-tool/migrate/capture"
	"github.com/migrate-tool/migrate/internal/takeover"
)

// Postfix has no graceful stop that lets SMTP sessions finish: "postfix
// stop" makes master(8) SIGTERM its whole process group, which cuts the
// sessions in progress, and a session cut after the message was queued but
// before the client read the 250 reply is sent again, so the message
// arrives twice (SMTP's duplicate window, RFC 1047). "postfix drain"
// (SIGKILL to master alone) lets the smtpd processes finish, but the
// helpers they need (trivial-rewrite, cleanup, anvil) quit at once, and a
// session waiting on one of them hangs.
//
// What is done instead is what master does itself when master.cf changes:
// the inet services on the ports being taken over get /bin/false as their
// command and master is told to reload (SIGHUP). A changed service keeps
// its listening socket; its smtpd processes of the old generation finish
// the session at hand and exit, and the new generation cannot start
// (master throttles a command that exits at once), so new connections wait
// in the socket's queue, which the holding proxy shares. Once no process
// of the service holds an accepted connection on those ports, master is
// stopped as usual (SIGTERM) and master.cf is put back as it was, before
// the final sync captures it.

// postfixConfig is a running Postfix instance's configuration directory.
type postfixConfig struct {
	master int    // master's pid
	dir    string // as master sees it (-c DIR, MAIL_CONFIG, or /etc/postfix)
	path   string // master.cf, reached through /proc/PID/root
}

func findPostfixConfig(master int) postfixConfig {
	c := postfixConfig{master: master, dir: "/etc/postfix"}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", master)); err == nil {
		for _, kv := range strings.Split(string(b), "\x00") {
			if v, ok := strings.CutPrefix(kv, "MAIL_CONFIG="); ok && v != "" {
				c.dir = v
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", master)); err == nil {
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		for i, a := range args {
			if a == "-c" && i+1 < len(args) && filepath.Base(args[0]) == "master" {
				c.dir = args[i+1]
			}
		}
	}
	c.path = filepath.Join(fmt.Sprintf("/proc/%d/root", master), c.dir, "master.cf")
	return c
}

// reachable returns master.cf's path as this process sees it, one that
// stays valid once master has exited: master's root (readlink of
// /proc/PID/root) joined with the configuration directory, checked to be
// the same file. A master in another mount namespace has none.
func (c postfixConfig) reachable() (string, error) {
	root, err := os.Readlink(fmt.Sprintf("/proc/%d/root", c.master))
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, c.dir, "master.cf")
	a, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	b, err := os.Stat(c.path)
	if err != nil {
		return "", err
	}
	if !os.SameFile(a, b) {
		return "", fmt.Errorf("%s is not the master.cf postfix (pid %d) reads: another mount namespace", p, c.master)
	}
	return p, nil
}

// disableInet rewrites master.cf with /bin/false as the command of every
// inet service listening on one of ports, and returns the original text
// and the services changed. Nothing is written when no service matches.
func disableInet(text []byte, ports []int) (out []byte, services []string) {
	var b bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	skipping := false // continuation lines of a disabled entry
	for sc.Scan() {
		line := sc.Text()
		if skipping && line != "" && (line[0] == ' ' || line[0] == '\t') {
			continue
		}
		skipping = false
		f := strings.Fields(line)
		if len(f) >= 8 && line[0] != '#' && line[0] != ' ' && line[0] != '\t' && f[1] == "inet" && slices.Contains(ports, inetPort(f[0])) {
			// service type private unpriv chroot wakeup maxproc command [args]
			fmt.Fprintf(&b, "%s %s %s %s %s %s %s /bin/false\n", f[0], f[1], f[2], f[3], f[4], f[5], f[6])
			services = append(services, f[0])
			skipping = true
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.Bytes(), services
}

// inetPort is the port of a master.cf inet service name: "smtp",
// "127.0.0.1:10025", "[::1]:submission", "2525".
func inetPort(name string) int {
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		name = name[i+1:]
	}
	if p, err := strconv.Atoi(name); err == nil {
		return p
	}
	if p, err := net.LookupPort("tcp", name); err == nil {
		return p
	}
	return -1
}

// backupPath keeps the original master.cf until it is put back, so that a
// cutover run again after a crash in between restores it first.
func postfixBackupPath(stateDir string) string {
	return filepath.Join(stateDir, "postfix-master.cf.orig")
}

// restorePostfixConfig puts back master.cf from a backup left in stateDir,
// if any.
func restorePostfixConfig(stateDir string) error {
	bak := postfixBackupPath(stateDir)
	b, err := os.ReadFile(bak + ".path")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	orig, err := os.ReadFile(bak)
	if err != nil {
		return err
	}
	if err := writeInPlace(string(b), orig); err != nil {
		return fmt.Errorf("put back %s: %w (its original is in %s)", b, err, bak)
	}
	os.Remove(bak + ".path")
	return os.Remove(bak)
}

// writeInPlace replaces path's content atomically, keeping its mode and
// owner.
func writeInPlace(path string, data []byte) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp := path + ".migrate-tmp"
	if err := os.WriteFile(tmp, data, st.Mode().Perm()); err != nil {
		return err
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		os.Chown(tmp, int(sys.Uid), int(sys.Gid))
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// quiescePostfix stops the Postfix whose master is pid from taking new
// connections on ports and waits, until deadline, for the sessions in
// progress to end. It returns a function that puts master.cf back; it must
// be called once master has exited, before anything captures the file.
//
// Cancelled meanwhile (Ctrl-C), it puts master.cf back and has master
// reload it, so the old Postfix serves again as before, and returns the
// context's error.
func quiescePostfix(ctx context.Context, tree *procTree, master int, ports []int, stateDir string, deadline time.Time, logf func(string, ...any)) (restore func() error, err error) {
	if err := restorePostfixConfig(stateDir); err != nil {
		return nil, err
	}
	cfg := findPostfixConfig(master)
	path, err := cfg.reachable()
	if err != nil {
		logf("postfix: cannot change its master.cf (%v); stopping it as usual, which cuts sessions in progress", err)
		return noRestore, nil
	}
	orig, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("postfix: %w", err)
	}
	changed, services := disableInet(orig, ports)
	if len(services) == 0 {
		logf("postfix: no inet service on ports %v in %s/master.cf; stopping it as usual", ports, cfg.dir)
		return noRestore, nil
	}
	bak := postfixBackupPath(stateDir)
	if err := os.WriteFile(bak, orig, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(bak+".path", []byte(path), 0o600); err != nil {
		return nil, err
	}
	restore = func() error { return restorePostfixConfig(stateDir) }
	if err := writeInPlace(path, changed); err != nil {
		// A read-only /etc, say: nothing changed, stop it as usual.
		os.Remove(bak + ".path")
		os.Remove(bak)
		logf("postfix: cannot change %s (%v); stopping it as usual, which cuts sessions in progress", path, err)
		return noRestore, nil
	}
	if err := syscall.Kill(master, syscall.SIGHUP); err != nil {
		restore()
		return nil, fmt.Errorf("postfix: reload master (pid %d): %w", master, err)
	}
	logf("postfix: services %v in %s/master.cf set to /bin/false and master reloaded: sessions in progress finish, new connections wait", services, cfg.dir)
	for {
		busy := postfixSessions(tree, master, ports)
		if len(busy) == 0 {
			logf("postfix: no session in progress")
			return restore, nil
		}
		if time.Now().After(deadline) {
			logf("postfix: sessions still in progress after the timeout, stopping anyway: %s", tree.describe(busy))
			return restore, nil
		}
		select {
		case <-ctx.Done():
			rerr := restore()
			syscall.Kill(master, syscall.SIGHUP)
			logf("postfix: interrupted: master.cf put back (%v) and master reloaded", rerr)
			return nil, errors.Join(ctx.Err(), rerr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// noRestore is quiescePostfix's restore when master.cf was left as it was.
func noRestore() error { return nil }

// postfixSessions returns the processes of the service, but master, that
// still listen on one of ports (the old generation of smtpd, before it
// exits) or hold a connection accepted on one. Only the service's own
// processes' descriptors are read.
func postfixSessions(tree *procTree, master int, ports []int) []int {
	listen, conns := map[uint64]bool{}, map[uint64]bool{}
	for _, p := range ports {
		l, _ := takeover.ListenInodes("/proc", p)
		c, _ := takeover.Connections("/proc", p)
		maps.Copy(listen, l)
		maps.Copy(conns, c)
	}
	var busy []int
	for _, pid := range tree.alive() {
		if pid == master {
			continue
		}
		for _, ino := range takeover.SocketInodes("/proc", pid) {
			if conns[ino] || (listen[ino] && exeName(pid) != "false") {
				busy = append(busy, pid)
				break
			}
		}
	}
	return busy
}

// postfixQueueDir is the queue directory of the Postfix whose master is
// pid, as this process reaches it (master's root joined with
// queue_directory from main.cf), or "" if it cannot be found.
func postfixQueueDir(master int) string {
	cfg := findPostfixConfig(master)
	root, err := os.Readlink(fmt.Sprintf("/proc/%d/root", master))
	if err != nil {
		return ""
	}
	dir := capture.ReadPostfixMainCf(filepath.Join(root, cfg.dir, "main.cf"))["queue_directory"]
	p := filepath.Join(root, dir)
	if _, err := os.Stat(filepath.Join(p, "incoming")); err != nil {
		return ""
	}
	return p
}

// releaseDeferredIncoming sets back to now the time stamps of the incoming
// queue files that are in the future. A qmgr restarted while a delivery
// agent still held a message (the reload restarts qmgr) puts the message
// back in the incoming queue 60 s ahead, and a quiet Postfix then looks at
// it again only at its next wakeup, up to 5 minutes later. Once every
// process of the stopped Postfix has exited no such lock is left, and the
// next Postfix to start on this queue (the new host's, or the old one's
// after a rollback) delivers the message at once. Returns how many files
// were changed.
func releaseDeferredIncoming(queueDir string, now time.Time) int {
	n := 0
	filepath.WalkDir(filepath.Join(queueDir, "incoming"), func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.ModTime().After(now) {
			if os.Chtimes(p, now, now) == nil {
				n++
			}
		}
		return nil
	})
	return n
}
