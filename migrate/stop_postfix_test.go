package migrate

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
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
