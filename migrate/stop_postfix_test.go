package migrate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

const masterCF = `# ==========================================================================
# service type  private unpriv  chroot  wakeup  maxproc command + args
# ==========================================================================
smtp      inet  n       -       y       -       -       smtpd
#smtp      inet  n       -       y       -       1       postscreen
submission inet n       -       y       -       -       smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
127.0.0.1:10025 inet n  -       n       -       -       smtpd
  -o content_filter=
pickup    unix  n       -       y       60      1       pickup
smtp      unix  -       -       y       -       -       smtp
`

func TestDisableInet(t *testing.T) {
	out, services := disableInet([]byte(masterCF), []int{25, 587})
	if !slices.Equal(services, []string{"smtp", "submission"}) {
		t.Errorf("services = %v", services)
	}
	got := string(out)
	for _, want := range []string{
		"smtp inet n - y - - /bin/false\n",
		"submission inet n - y - - /bin/false\n",
		"#smtp      inet  n       -       y       -       1       postscreen\n", // comments untouched
		"127.0.0.1:10025 inet n  -       n       -       -       smtpd\n  -o content_filter=\n",
		"smtp      unix  -       -       y       -       -       smtp\n", // same name, not inet
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	if strings.Contains(got, "syslog_name=postfix/submission") {
		t.Errorf("the disabled entry's -o lines are left:\n%s", got)
	}
	if out, services := disableInet([]byte(masterCF), []int{10025}); len(services) != 1 || !strings.Contains(string(out), "127.0.0.1:10025 inet n - n - - /bin/false\npickup") {
		t.Errorf("by address: %v\n%s", services, out)
	}
	if out, services := disableInet([]byte(masterCF), []int{53}); len(services) != 0 || string(out) != masterCF {
		t.Errorf("no match changed something: %v", services)
	}
}

func TestInetPort(t *testing.T) {
	for name, want := range map[string]int{"smtp": 25, "2525": 2525, "127.0.0.1:10025": 10025, "[::1]:submission": 587, "nosuchservice": -1} {
		if got := inetPort(name); got != want {
			t.Errorf("inetPort(%q) = %d, want %d", name, got, want)
		}
	}
}

// The backup left by an interrupted stop is put back, and only once.
func TestRestorePostfixConfig(t *testing.T) {
	state, conf := t.TempDir(), filepath.Join(t.TempDir(), "master.cf")
	if err := restorePostfixConfig(state); err != nil {
		t.Fatalf("no backup: %v", err)
	}
	os.WriteFile(conf, []byte("changed\n"), 0o640)
	os.WriteFile(postfixBackupPath(state), []byte(masterCF), 0o600)
	os.WriteFile(postfixBackupPath(state)+".path", []byte(conf), 0o600)
	if err := restorePostfixConfig(state); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(conf)
	st, _ := os.Stat(conf)
	if string(b) != masterCF || st.Mode().Perm() != 0o640 {
		t.Errorf("master.cf after restore: mode %v\n%s", st.Mode(), b)
	}
	if _, err := os.Stat(postfixBackupPath(state)); !os.IsNotExist(err) {
		t.Errorf("backup left behind: %v", err)
	}
	os.WriteFile(conf, []byte("edited later by the admin\n"), 0o640)
	if err := restorePostfixConfig(state); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(conf); string(b) != "edited later by the admin\n" {
		t.Errorf("restored twice: %s", b)
	}
}

// fakePostfix starts a "master" (a shell that ignores SIGHUP) with
// MAIL_CONFIG naming a directory whose master.cf has an inet service on a
// free port, and a child of it listening there like an smtpd.
func fakePostfix(t *testing.T) (master int, port int, conf string, child *os.Process) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	conf = fmt.Sprintf("pickup unix n - y 60 1 pickup\n127.0.0.1:%d inet n - n - - smtpd\n  -o smtpd_tls_security_level=none\n", port)
	os.WriteFile(filepath.Join(dir, "master.cf"), []byte(conf), 0o644)
	exe, _ := os.Executable()
	cmd := exec.Command("sh", "-c", `trap "" HUP; "$0" -test.run='^TestHelperOldService$' & echo $!; wait`, exe)
	// The smtpd is hold_test.go's stand-in for an old service.
	cmd.Env = append(os.Environ(), "MAIL_CONFIG="+dir, "HOLD_HELPER=1", fmt.Sprintf("HOLD_HELPER_ADDR=127.0.0.1:%d", port))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Fscan(out, &pid); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL); cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the fake smtpd does not listen")
		}
		time.Sleep(10 * time.Millisecond)
	}
	p, _ := os.FindProcess(pid)
	return cmd.Process.Pid, port, filepath.Join(dir, "master.cf"), p
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The service's inet entry is disabled while sessions finish; once its
// last process lets go of the port, the stop goes on, and restore puts
// master.cf back.
func TestQuiescePostfix(t *testing.T) {
	master, port, conf, child := fakePostfix(t)
	orig := readFile(t, conf)
	state := t.TempDir()
	tree := newProcTree(master, nil)
	go func() {
		time.Sleep(300 * time.Millisecond)
		child.Kill() // the last session ends
	}()
	start := time.Now()
	restore, err := quiescePostfix(context.Background(), tree, master, []int{port}, state, time.Now().Add(20*time.Second), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 250*time.Millisecond || took > 10*time.Second {
		t.Errorf("quiesce took %v; want it to wait for the listener, ~300ms", took)
	}
	changed := readFile(t, conf)
	if !strings.Contains(changed, fmt.Sprintf("127.0.0.1:%d inet n - n - - /bin/false\n", port)) || strings.Contains(changed, "smtpd_tls_security_level") {
		t.Errorf("master.cf while stopping:\n%s", changed)
	}
	if err := restore(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, conf); got != orig {
		t.Errorf("master.cf after restore:\n%s", got)
	}
}

// Ctrl-C during the wait puts master.cf back at once.
func TestQuiescePostfixCancelled(t *testing.T) {
	master, port, conf, _ := fakePostfix(t)
	orig := readFile(t, conf)
	state := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := quiescePostfix(ctx, newProcTree(master, nil), master, []int{port}, state, time.Now().Add(20*time.Second), t.Logf)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's", err)
	}
	if got := readFile(t, conf); got != orig {
		t.Errorf("master.cf after the interruption:\n%s", got)
	}
	if _, err := os.Stat(postfixBackupPath(state)); !os.IsNotExist(err) {
		t.Errorf("backup left behind: %v", err)
	}
}

func TestReleaseDeferredIncoming(t *testing.T) {
	q := t.TempDir()
	now := time.Now().Truncate(time.Second)
	os.MkdirAll(filepath.Join(q, "incoming", "A"), 0o700)
	for name, mtime := range map[string]time.Time{"incoming/LATER": now.Add(60 * time.Second), "incoming/A/LATER2": now.Add(30 * time.Second), "incoming/NOW": now.Add(-time.Second)} {
		p := filepath.Join(q, name)
		os.WriteFile(p, []byte("queue file"), 0o700)
		os.Chtimes(p, mtime, mtime)
	}
	if n := releaseDeferredIncoming(q, now); n != 2 {
		t.Fatalf("changed %d files, want the 2 with future time stamps", n)
	}
	for _, name := range []string{"incoming/LATER", "incoming/A/LATER2"} {
		if fi, _ := os.Stat(filepath.Join(q, name)); !fi.ModTime().Equal(now) {
			t.Errorf("%s: mtime %v, want %v", name, fi.ModTime(), now)
		}
	}
	if fi, _ := os.Stat(filepath.Join(q, "incoming/NOW")); !fi.ModTime().Equal(now.Add(-time.Second)) {
		t.Errorf("a past time stamp was changed: %v", fi.ModTime())
	}
}
