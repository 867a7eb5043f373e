//go:build e2e

package capture_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/capture"
	"github.com/migrate-tool/migrate/internal/elfdep"
	"github.com/migrate-tool/migrate/internal/testbed"
)

// captureOld runs `migrate capture --from OLD args... -o FILE` over SSH
// and returns the verified archive.
func captureOld(t *testing.T, bed *testbed.Bed, out string, args ...string) *capture.Reader {
	t.Helper()
	full := append([]string{"capture", "--from", bed.Old.SSHSpec(), "-o", out}, args...)
	start := time.Now()
	stdout, stderr, code := bed.Migrate(t, full...)
	t.Logf("capture %v: %v\n%s%s", args, time.Since(start).Round(time.Millisecond), stdout, stderr)
	if code != 0 {
		t.Fatalf("capture exited %d:\n%s", code, stderr)
	}
	r, err := capture.OpenArchive(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Verify(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stderr, "start-up not traced") {
		t.Errorf("start-up was not traced: %s", stderr)
	}
	return r
}

// startHTTPLoad GETs url until stopped; anything but a 200 with body want
// is an error.
func startHTTPLoad(url, want string) *load {
	client := &http.Client{Timeout: 2 * time.Second}
	return startLoad(func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != want {
			return fmt.Errorf("status %d body %q", resp.StatusCode, b)
		}
		return nil
	})
}

// load runs fn repeatedly (bounded in count and time) until stopped.
type load struct {
	n, errs atomic.Int64
	first   atomic.Value
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startLoad(fn func() error) *load {
	l := &load{stop: make(chan struct{})}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		deadline := time.Now().Add(2 * time.Minute)
		for i := 0; i < 20000 && time.Now().Before(deadline); i++ {
			select {
			case <-l.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			l.n.Add(1)
			if err := fn(); err != nil {
				l.errs.Add(1)
				l.first.CompareAndSwap(nil, err.Error())
			}
		}
	}()
	return l
}

func (l *load) check(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	t.Logf("load: %d requests, %d errors", l.n.Load(), l.errs.Load())
	if l.n.Load() == 0 {
		t.Fatal("load sent no requests")
	}
	if l.errs.Load() > 0 {
		t.Fatalf("load saw %d errors during capture, first: %v", l.errs.Load(), l.first.Load())
	}
}

func index(m *capture.Manifest) map[string]*capture.Entry {
	out := map[string]*capture.Entry{}
	for i := range m.Entries {
		out[m.Entries[i].Path] = &m.Entries[i]
	}
	return out
}

func hasReason(e *capture.Entry, prefix string) bool {
	for _, r := range e.Reasons {
		if strings.HasPrefix(r, prefix) {
			return true
		}
	}
	return false
}

func requireEntry(t *testing.T, es map[string]*capture.Entry, path, typ string) *capture.Entry {
	t.Helper()
	e := es[path]
	if e == nil {
		t.Fatalf("manifest lacks %s", path)
	}
	if typ != "" && e.Type != typ {
		t.Fatalf("%s is a %s, want %s", path, e.Type, typ)
	}
	return e
}

// checkCommon asserts what every capture needs (TESTBED.md's list beyond
// the ldd closure): merged-/usr links, the loader link, no path stored
// twice through /lib and /usr/lib, /dev/null.
func checkCommon(t *testing.T, m *capture.Manifest) {
	t.Helper()
	es := index(m)
	for _, l := range []string{"/lib", "/lib64", "/bin", "/sbin"} {
		if target, err := os.Readlink(l); err == nil {
			e := requireEntry(t, es, l, capture.TypeSymlink)
			if e.Link != target || !hasReason(e, "usrmerge") {
				t.Errorf("%s: link %q reasons %v, want %q usrmerge", l, e.Link, e.Reasons, target)
			}
		}
	}
	for p := range es {
		for _, l := range []string{"/lib/", "/lib64/", "/bin/", "/sbin/"} {
			if strings.HasPrefix(p, l) {
				if fi, err := os.Lstat(strings.TrimSuffix(l, "/")); err == nil && fi.Mode()&os.ModeSymlink != 0 {
					t.Errorf("%s stored through the merged-/usr link %s", p, l)
				}
			}
		}
	}
	requireEntry(t, es, "/usr/lib64/ld-linux-x86-64.so.2", capture.TypeSymlink)
	if e := requireEntry(t, es, "/dev/null", capture.TypeCharDev); e.Major != 1 || e.Minor != 3 {
		t.Errorf("/dev/null is %d,%d", e.Major, e.Minor)
	}
	for _, p := range []string{"/etc/passwd", "/etc/group", "/etc/nsswitch.conf"} {
		requireEntry(t, es, p, capture.TypeFile)
	}
	if len(m.Start) == 0 {
		t.Error("no start command recorded")
	}
	for _, e := range m.Entries {
		if len(e.Reasons) == 0 {
			t.Errorf("%s has no reason", e.Path)
		}
	}
}

// realSet maps every captured path (under /usr and /etc, which old shares
// with the test runner) to its real path.
func realSet(m *capture.Manifest) map[string]bool {
	out := map[string]bool{}
	for _, e := range m.Entries {
		if r, err := filepath.EvalSymlinks(e.Path); err == nil {
			out[r] = true
		}
	}
	return out
}

// checkLdd: for every captured ELF file, each library ldd lists (test only:
// the product never runs binaries) is captured.
func checkLdd(t *testing.T, m *capture.Manifest) {
	t.Helper()
	have := realSet(m)
	n := 0
	for _, e := range m.Entries {
		if e.Type != capture.TypeFile || !strings.HasPrefix(e.Path, "/usr/") {
			continue
		}
		f, err := elfdep.Read(e.Path)
		if err != nil || (len(f.Needed) == 0 && f.Interp == "") {
			continue
		}
		n++
		out, err := exec.Command("ldd", e.Path).Output()
		if err != nil {
			continue // ldd refuses some objects (e.g. the loader itself)
		}
		for _, l := range strings.Split(string(out), "\n") {
			var p string
			if _, after, ok := strings.Cut(l, "=> "); ok {
				p = strings.Fields(after)[0]
			} else if fs := strings.Fields(l); len(fs) > 0 && strings.HasPrefix(fs[0], "/") {
				p = fs[0]
			}
			if p == "" || p == "not" {
				continue
			}
			r, err := filepath.EvalSymlinks(p)
			if err == nil && !have[r] {
				t.Errorf("ldd %s lists %s, not captured", e.Path, p)
			}
		}
	}
	if n < 3 {
		t.Errorf("only %d ELF files checked against ldd", n)
	}
	t.Logf("%d ELF files checked against ldd", n)
}

// checkMaps: every file the live process maps (NSS, dlopen'ed modules) is captured.
func checkMaps(t *testing.T, m *capture.Manifest, pid int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	have := realSet(m)
	for _, l := range strings.Split(string(b), "\n") {
		fs := strings.Fields(l)
		if len(fs) != 6 || !strings.HasPrefix(fs[5], "/usr/") {
			continue
		}
		if r, err := filepath.EvalSymlinks(fs[5]); err == nil && !have[r] {
			t.Errorf("live process maps %s, not captured", fs[5])
		}
	}
}

const nginxConf = `user www-data;
worker_processes 2;
pid /run/nginx.pid;
error_log /var/log/nginx/error.log;
events { worker_connections 256; }
http {
	include /etc/nginx/mime.types;
	access_log /var/log/nginx/access.log;
	server { listen 80; root /srv/www; }
}
`

func TestCaptureNginxE2E(t *testing.T) {
	bed := testbed.New(t, testbed.Options{})
	testbed.RequireTools(t, "nginx", "strace", "ldd")
	old := bed.Old
	old.WriteFile(t, "/srv/www/index.html", []byte("v1\n"), 0o644)
	old.WriteFile(t, "/srv/www/gone.html", []byte("bye\n"), 0o644)
	old.WriteFile(t, "/srv/conf/nginx.conf", []byte(nginxConf), 0o644)
	old.MustExec(t, "mkdir", "-p", "/var/log/nginx")
	p := old.Start(t, "nginx", "nginx", "-c", "/srv/conf/nginx.conf", "-g", "daemon off;")
	url := "http://" + old.Addr + "/"
	if err := testbed.WaitHTTP(url, 10*time.Second, p); err != nil {
		t.Fatal(err)
	}
	ld := startHTTPLoad(url, "v1\n")
	out := filepath.Join(t.TempDir(), "nginx.tar.zst")
	m, es := captureLoaded(t, bed, out, ld, "--service", "nginx")
	checkMaps(t, m, p.Pid())
	if e := requireEntry(t, es, "/srv/www/index.html", capture.TypeFile); !hasReason(e, "data:root") {
		t.Errorf("docroot file reasons %v", e.Reasons)
	}
	requireEntry(t, es, "/srv/conf/nginx.conf", capture.TypeFile)
	requireEntry(t, es, "/usr/sbin/nginx", capture.TypeFile)
	requireEntry(t, es, "/var/lib/nginx", capture.TypeDir)
	dirs := map[string]bool{}
	for _, d := range m.RuntimeDirs {
		dirs[d.Path] = true
	}
	for _, d := range []string{"/run", "/var/log/nginx"} {
		if !dirs[d] {
			t.Errorf("runtime dir %s missing: %v", d, m.RuntimeDirs)
		}
	}
	if es["/var/log/nginx/access.log"] != nil {
		t.Error("log captured without --with-logs")
	}
	if !hasUser(m, "www-data") || !hasGroup(m, "www-data") {
		t.Errorf("www-data missing: users %v groups %v", m.Users, m.Groups)
	}
	if strings.Join(m.Start, " ") != "/usr/sbin/nginx -c /srv/conf/nginx.conf -g daemon off;" {
		t.Errorf("start %q", m.Start)
	}
	if len(m.Ports) == 0 || m.Ports[0].Port != 80 {
		t.Errorf("ports %v", m.Ports)
	}

	// The archive alone rebuilds a working nginx in a chroot on new.
	rebuiltServes(t, bed, out, m, "nginx", "v1\n", 10*time.Second)

	// --dry-run --with-logs: the logs are listed (with their reason), nothing is written.
	dry := filepath.Join(t.TempDir(), "dry.tar.zst")
	stdout, stderr, code := bed.Migrate(t, "--json", "capture", "--from", old.SSHSpec(), "--service", "nginx",
		"--with-logs", "--trace", "off", "--dry-run", "-o", dry)
	if code != 0 {
		t.Fatalf("dry run: %d %s", code, stderr)
	}
	if !strings.Contains(stdout, `"path":"/var/log/nginx/access.log","reasons":["log"]`) {
		t.Errorf("dry run with logs does not list access.log as a log:\n%.2000s", stdout)
	}
	if _, err := os.Stat(dry); err == nil {
		t.Error("dry run wrote the archive")
	}

	// --since: change one docroot file, delete another.
	old.WriteFile(t, "/srv/www/index.html", []byte("v2 changed\n"), 0o644)
	if err := os.Remove(old.Path("/srv/www/gone.html")); err != nil {
		t.Fatal(err)
	}
	dout := filepath.Join(t.TempDir(), "delta.tar.zst")
	d := captureOld(t, bed, dout, "--service", "nginx", "--since", out).Manifest()
	var got []string
	for _, e := range d.Entries {
		// /etc and /usr are shared with the whole machine, where other
		// tests may add users or packages between the two captures.
		if strings.HasPrefix(e.Path, "/etc/") || strings.HasPrefix(e.Path, "/usr/") {
			t.Logf("delta also holds %s, changed on the shared file system", e.Path)
			continue
		}
		got = append(got, e.Path)
	}
	if d.Kind != capture.KindDelta || strings.Join(got, " ") != "/srv/www/index.html" || strings.Join(d.Deleted, " ") != "/srv/www/gone.html" {
		t.Fatalf("delta: kind %s entries %v deleted %v", d.Kind, got, d.Deleted)
	}
}

// captureLoaded captures the service named by args on old into out while
// ld runs against it, checks that the load saw no error and what every
// capture must hold (checkCommon, checkLdd), and returns the manifest and
// its entries by path.
func captureLoaded(t *testing.T, bed *testbed.Bed, out string, ld *load, args ...string) (*capture.Manifest, map[string]*capture.Entry) {
	t.Helper()
	r := captureOld(t, bed, out, args...)
	ld.check(t)
	m := r.Manifest()
	checkCommon(t, m)
	checkLdd(t, m)
	return m, index(m)
}

// rebuiltServes rebuilds the archive out into a chroot on new, runs m's
// start command there and checks that it serves want over HTTP.
func rebuiltServes(t *testing.T, bed *testbed.Bed, out string, m *capture.Manifest, name, want string, timeout time.Duration) {
	t.Helper()
	rebuild(t, bed.New, out, m)
	np := bed.New.Start(t, name+"-chroot", append([]string{"chroot", "/srv/chroot"}, m.Start...)...)
	url := "http://" + bed.New.Addr + "/"
	if err := testbed.WaitHTTP(url, timeout, np); err != nil {
		t.Fatalf("rebuilt %s: %v\n%s", name, err, np.Log())
	}
	if body := get(t, url); body != want {
		t.Fatalf("rebuilt %s served %q", name, body)
	}
}

// rebuild extracts the archive with plain tar into /srv/chroot on host n
// and creates the manifest's runtime directories.
func rebuild(t *testing.T, n *testbed.Node, archive string, m *capture.Manifest) {
	t.Helper()
	n.MustExec(t, "mkdir", "-p", "/srv/chroot")
	n.MustExec(t, "tar", "--zstd", "-xpf", archive, "-C", "/srv/chroot", "--strip-components=1", "root/")
	// The chroot's tmpfs is mounted nodev: bind the host's device nodes
	// over the extracted ones (as a builder on such a mount must).
	for _, e := range m.Entries {
		if e.Type == capture.TypeCharDev {
			n.MustExec(t, "mount", "--bind", e.Path, "/srv/chroot"+e.Path)
		}
	}
	for _, d := range m.RuntimeDirs {
		p := "/srv/chroot" + d.Path
		n.MustExec(t, "mkdir", "-p", p)
		n.MustExec(t, "chown", fmt.Sprintf("%d:%d", d.UID, d.GID), p)
		n.MustExec(t, "chmod", fmt.Sprintf("%o", d.Mode), p)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func hasUser(m *capture.Manifest, n string) bool {
	for _, u := range m.Users {
		if u.Name == n {
			return true
		}
	}
	return false
}

func hasGroup(m *capture.Manifest, n string) bool {
	for _, g := range m.Groups {
		if g.Name == n {
			return true
		}
	}
	return false
}

func TestCaptureBindE2E(t *testing.T) {
	bed := testbed.New(t, testbed.Options{})
	testbed.RequireTools(t, "named", "dig", "strace")
	old := bed.Old
	conf := fmt.Sprintf(`options { directory "/srv/bind"; pid-file "named.pid"; session-keyfile "session.key";
  listen-on port 53 { %s; }; listen-on-v6 { none; }; recursion no; dnssec-validation no; };
zone "example.test" { type primary; file "example.test.db"; };
`, old.Addr)
	zone := `$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 86400 300
@ NS ns1
ns1 A 127.0.0.1
www A 192.0.2.10
`
	old.WriteFile(t, "/srv/bind/named.conf", []byte(conf), 0o644)
	old.WriteFile(t, "/srv/bind/example.test.db", []byte(zone), 0o644)
	p := old.Start(t, "named", "named", "-g", "-c", "/srv/bind/named.conf")
	query := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "dig", "+short", "+time=1", "+tries=1", "@"+old.Addr, "www.example.test", "A").Output()
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(out)) != "192.0.2.10" {
			return fmt.Errorf("answer %q", out)
		}
		return nil
	}
	testbed.WaitFor(t, "named answering", 15*time.Second, query)
	ld := startLoad(query)
	out := filepath.Join(t.TempDir(), "bind.tar.zst")
	m, es := captureLoaded(t, bed, out, ld, "--port", "53")
	checkMaps(t, m, p.Pid())
	if e := requireEntry(t, es, "/srv/bind/example.test.db", capture.TypeFile); !hasReason(e, "data:zone") {
		t.Errorf("zone file reasons %v", e.Reasons)
	}
	requireEntry(t, es, "/srv/bind/named.conf", capture.TypeFile)
	requireEntry(t, es, "/usr/sbin/named", capture.TypeFile)
	if m.Service != "bind9" || strings.Join(m.Start, " ") != "/usr/sbin/named -g -c /srv/bind/named.conf" {
		t.Errorf("service %s start %q", m.Service, m.Start)
	}

	// The archive alone rebuilds a working named in a chroot on new (the
	// configuration listens on old's address: rewrite it for new's).
	rebuild(t, bed.New, out, m)
	newConf := strings.ReplaceAll(conf, old.Addr, bed.New.Addr)
	bed.New.WriteFile(t, "/srv/chroot/srv/bind/named.conf", []byte(newConf), 0o644)
	np := bed.New.Start(t, "named-chroot", append([]string{"chroot", "/srv/chroot"}, m.Start...)...)
	testbed.WaitFor(t, "rebuilt named answering", 15*time.Second, func() error {
		if ok, err := np.Exited(); ok {
			return fmt.Errorf("named exited: %v\n%s", err, np.Log())
		}
		out, err := exec.Command("dig", "+short", "+time=1", "+tries=1", "@"+bed.New.Addr, "www.example.test", "A").Output()
		if err != nil || strings.TrimSpace(string(out)) != "192.0.2.10" {
			return fmt.Errorf("answer %q %v", out, err)
		}
		return nil
	})
}

func TestCapturePostfixE2E(t *testing.T) {
	bed := testbed.New(t, testbed.Options{PrivateDirs: []string{"/var/spool/postfix", "/var/mail", "/var/lib/postfix"}})
	testbed.RequireTools(t, "postfix", "nc", "strace")
	old := bed.Old
	old.MustExec(t, "mkdir", "-p", "/srv/pf")
	old.MustExec(t, "cp", "-a", "/etc/postfix/.", "/srv/pf/")
	old.MustExec(t, "sh", "-c", "printf 'header_checks = regexp:/srv/pf/header_checks\\ninet_interfaces = all\\ninet_protocols = ipv4\\n' >> /srv/pf/main.cf && echo '/^Subject: hold/ HOLD' > /srv/pf/header_checks")
	old.Start(t, "postfix", "postfix", "-c", "/srv/pf", "start-fg")
	sendMail := func(subject string) error {
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(old.Addr, "25"), 5*time.Second)
		if err != nil {
			return err
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		c, err := smtp.NewClient(conn, old.Addr)
		if err != nil {
			conn.Close()
			return err
		}
		defer c.Close()
		if err := c.Hello("loadgen"); err != nil {
			return err
		}
		if err := c.Mail("t@localhost"); err != nil {
			return err
		}
		if err := c.Rcpt("www-data@localhost"); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "Subject: %s\r\n\r\nhi\r\n", subject)
		if err := w.Close(); err != nil {
			return err
		}
		return c.Quit()
	}
	testbed.WaitFor(t, "postfix accepting mail", 20*time.Second, func() error { return sendMail("first") })
	if err := sendMail("hold this one"); err != nil {
		t.Fatal(err)
	}
	testbed.WaitFor(t, "mailbox delivery", 20*time.Second, func() error {
		_, err := old.Stat("/var/mail/www-data")
		return err
	})
	held, _ := old.Exec(context.Background(), "find", "/var/spool/postfix/hold", "-type", "f")
	if len(strings.TrimSpace(string(held))) == 0 {
		t.Fatal("no held message in the queue")
	}
	ld := startLoad(func() error { return sendMail("load") })
	out := filepath.Join(t.TempDir(), "postfix.tar.zst")
	m, es := captureLoaded(t, bed, out, ld, "--service", "postfix")
	if e := requireEntry(t, es, "/var/mail/www-data", capture.TypeFile); !hasReason(e, "data:spool") {
		t.Errorf("mailbox reasons %v", e.Reasons)
	}
	for _, h := range strings.Fields(string(held)) {
		if e := requireEntry(t, es, h, capture.TypeFile); !hasReason(e, "data:queue") {
			t.Errorf("queue file reasons %v", e.Reasons)
		}
	}
	requireEntry(t, es, "/srv/pf/main.cf", capture.TypeFile)
	requireEntry(t, es, "/usr/lib/postfix/sbin/master", capture.TypeFile)
	var execs []string
	for _, e := range m.Entries {
		if hasReason(&e, "trace:exec") {
			execs = append(execs, e.Path)
		}
	}
	sort.Strings(execs)
	t.Logf("traced start-up executed %d distinct files", len(execs))
	for _, want := range []string{"/usr/sbin/postconf", "/usr/lib/postfix/sbin/master"} {
		if i := sort.SearchStrings(execs, want); i == len(execs) || execs[i] != want {
			t.Errorf("traced start-up did not record %s: %v", want, execs)
		}
	}
	if !hasUser(m, "postfix") || !hasGroup(m, "postdrop") {
		t.Errorf("accounts: users %v groups %v", m.Users, m.Groups)
	}
	if strings.Join(m.Start, " ") != "/usr/sbin/postfix -c /srv/pf start-fg" {
		t.Errorf("start %q", m.Start)
	}

	// The archive alone rebuilds a working Postfix in a chroot on new: it
	// accepts and delivers mail, and the held message came along.
	rebuild(t, bed.New, out, m)
	for _, h := range strings.Fields(string(held)) {
		if _, err := bed.New.Stat("/srv/chroot" + h); err != nil {
			t.Errorf("held message not in the rebuilt queue: %v", err)
		}
	}
	before, _ := bed.New.Stat("/srv/chroot/var/mail/www-data")
	np := bed.New.Start(t, "postfix-chroot", append([]string{"chroot", "/srv/chroot"}, m.Start...)...)
	old = bed.New // sendMail now talks to new
	testbed.WaitFor(t, "rebuilt postfix accepting mail", 30*time.Second, func() error {
		if ok, err := np.Exited(); ok {
			return fmt.Errorf("postfix exited: %v\n%s", err, np.Log())
		}
		return sendMail("after rebuild")
	})
	testbed.WaitFor(t, "delivery by the rebuilt postfix", 20*time.Second, func() error {
		fi, err := bed.New.Stat("/srv/chroot/var/mail/www-data")
		if err != nil {
			return err
		}
		if before != nil && fi.Size() <= before.Size() {
			return fmt.Errorf("mailbox still %d bytes", fi.Size())
		}
		return nil
	})
}

// runIn runs the migrate binary inside host n and returns stdout, stderr
// and the exit code.
func runIn(t *testing.T, n *testbed.Node, prefix []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	argv := append(append(prefix, testbed.Binary(t)), args...)
	cmd := n.Command(ctx, argv...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// TestCaptureBadInputE2E: each bad input is a one-line error with a hint,
// a non-zero exit, and no archive (nor temp file) left behind.
func TestCaptureBadInputE2E(t *testing.T) {
	bed := testbed.New(t, testbed.Options{NoSSH: true})
	testbed.RequireTools(t, "nginx", "setpriv")
	old := bed.Old
	old.WriteFile(t, "/srv/www/index.html", []byte("hi\n"), 0o644)
	old.WriteFile(t, "/srv/conf/nginx.conf", []byte(nginxConf), 0o644)
	old.MustExec(t, "mkdir", "-p", "/var/log/nginx", "/srv/out", "/srv/full")
	old.MustExec(t, "chmod", "1777", "/srv/out")
	old.MustExec(t, "mount", "-t", "tmpfs", "-o", "size=256k", "full", "/srv/full")
	p := old.Start(t, "nginx", "nginx", "-c", "/srv/conf/nginx.conf", "-g", "daemon off;")
	if err := testbed.WaitHTTP("http://"+old.Addr+"/", 10*time.Second, p); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		prefix  []string
		args    []string
		code    int
		errLine string
		hint    string
		dir     string
	}{
		{"unknown service", nil, []string{"--service", "no-such-service"}, 1,
			`migrate: error: unknown service "no-such-service": no running process, package or init script by that name`, "--port", "/srv/out"},
		{"not running", nil, []string{"--service", "named"}, 1,
			`migrate: error: service "named": service not running`, "start it first", "/srv/out"},
		{"no permission", []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}, []string{"--service", "nginx"}, 1,
			"permission denied", "run the capture as root", "/srv/out"},
		{"full disk", nil, []string{"--service", "nginx", "--trace", "off"}, 1,
			"no space left on device", "free space on the output file system", "/srv/full"},
		{"no service named", nil, nil, 2, "migrate: error: name the service with --service NAME or --port N", "", "/srv/out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := tt.dir + "/capture.tar.zst"
			args := append([]string{"capture", "--from", "local", "-o", out}, tt.args...)
			_, stderr, code := runIn(t, old, tt.prefix, args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tt.code, stderr)
			}
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if !strings.HasPrefix(lines[0], "migrate: error: ") || !strings.Contains(lines[0], tt.errLine) {
				t.Errorf("first stderr line %q, want it to contain %q", lines[0], tt.errLine)
			}
			if tt.hint != "" && (len(lines) < 2 || !strings.HasPrefix(lines[1], "migrate: hint: ") || !strings.Contains(lines[1], tt.hint)) {
				t.Errorf("stderr %q lacks hint %q", stderr, tt.hint)
			}
			left := strings.TrimSpace(old.MustExec(t, "ls", "-A", tt.dir))
			if left != "" {
				t.Errorf("left behind in %s: %s", tt.dir, left)
			}
		})
	}

	// A damaged archive: verify names the first bad entry.
	_, stderr, code := runIn(t, old, nil, "capture", "--from", "local", "--service", "nginx", "--trace", "off", "-o", "/srv/out/good.tar.zst")
	if code != 0 {
		t.Fatalf("capture: %d %s", code, stderr)
	}
	good, err := os.ReadFile(old.Path("/srv/out/good.tar.zst"))
	if err != nil {
		t.Fatal(err)
	}
	old.WriteFile(t, "/srv/out/cut.tar.zst", good[:len(good)/2], 0o600)
	stdout, stderr, code := runIn(t, old, nil, "archive", "verify", "/srv/out/good.tar.zst")
	if code != 0 || !strings.HasPrefix(stdout, "ok /srv/out/good.tar.zst: full nginx") {
		t.Fatalf("verify good: %d %q %q", code, stdout, stderr)
	}
	_, stderr, code = runIn(t, old, nil, "archive", "verify", "/srv/out/cut.tar.zst")
	if code != 1 || !strings.Contains(stderr, "migrate: error: archive /srv/out/cut.tar.zst: entry /") ||
		!strings.Contains(stderr, "migrate: hint: the archive is damaged from entry /") {
		t.Fatalf("verify truncated: %d %q", code, stderr)
	}
}

// TestCaptureGenericE2E: a service without a profile (Unbound), found by
// its port, captured by the generic path: executable, package, the config
// file named on its command line, libraries, start command.
func TestCaptureGenericE2E(t *testing.T) {
	bed := testbed.New(t, testbed.Options{NoSSH: true})
	testbed.RequireTools(t, "unbound", "strace")
	old := bed.Old
	conf := `server:
  interface: 127.0.0.1@15355
  port: 15355
  access-control: 127.0.0.0/8 allow
  username: ""
  chroot: ""
  directory: "/srv/unbound"
  pidfile: "/srv/unbound/unbound.pid"
  use-syslog: no
  module-config: "iterator"
`
	old.WriteFile(t, "/srv/unbound/unbound.conf", []byte(conf), 0o644)
	p := old.Start(t, "unbound", "unbound", "-d", "-c", "/srv/unbound/unbound.conf")
	testbed.WaitFor(t, "unbound listening", 10*time.Second, func() error {
		_, err := old.Exec(context.Background(), "nc", "-z", "127.0.0.1", "15355")
		return err
	})
	old.MustExec(t, "mkdir", "-p", "/srv/out")
	_, stderr, code := runIn(t, old, nil, "capture", "--from", "local", "--port", "15355", "-o", "/srv/out/u.tar.zst")
	if code != 0 {
		t.Fatalf("capture: %d %s", code, stderr)
	}
	r, err := capture.OpenArchive(old.Path("/srv/out/u.tar.zst"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Verify(); err != nil {
		t.Fatal(err)
	}
	m := r.Manifest()
	es := index(m)
	checkCommon(t, m)
	checkLdd(t, m)
	checkMaps(t, m, p.Pid())
	if e := requireEntry(t, es, "/srv/unbound/unbound.conf", capture.TypeFile); !hasReason(e, "config:cmdline") {
		t.Errorf("config reasons %v", e.Reasons)
	}
	if e := requireEntry(t, es, "/usr/sbin/unbound", capture.TypeFile); e.Package != "unbound" {
		t.Errorf("unbound package %q", e.Package)
	}
	if m.Service != "unbound" || strings.Join(m.Start, " ") != "/usr/sbin/unbound -d -c /srv/unbound/unbound.conf" {
		t.Errorf("service %q start %q", m.Service, m.Start)
	}
}
