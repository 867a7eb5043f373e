package testbed

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestNames(t *testing.T) {
	tests := []struct {
		name  string
		index int // -1: not a bed namespace
	}{
		{"mtb1-old", 1}, {"mtb254-client", 254}, {"mtb7-lan", 7}, {"mtb7-new", 7},
		{"mtb7-host", -1}, {"mig-old", -1}, {"mtb-old", -1}, {"mtb1234-old", -1}, {"xmtb1-old", -1},
	}
	for _, tt := range tests {
		m := nsName.FindStringSubmatch(tt.name)
		got := -1
		if m != nil {
			fmt.Sscan(m[1], &got)
		}
		if got != tt.index {
			t.Errorf("%s: index %d, want %d", tt.name, got, tt.index)
		}
	}
	// Interface names are limited to 15 bytes.
	if l := len(rootLink(254)); l > 15 {
		t.Errorf("root link name %q is %d bytes", rootLink(254), l)
	}
	if got := prefixOf(254) + "client"; len(got) > 15 {
		t.Errorf("%q too long", got)
	}
}

func TestGenerateKeyAndKnownHosts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	pub, err := GenerateKey(path, "test@bed")
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode: %v %v", st.Mode(), err)
	}
	b, _ := os.ReadFile(path)
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	if string(signer.PublicKey().Marshal()) != string(pub.Marshal()) {
		t.Error("private and public halves differ")
	}
	pubLine, _ := os.ReadFile(path + ".pub")
	if _, comment, _, _, err := ssh.ParseAuthorizedKey(pubLine); err != nil || comment != "test@bed" {
		t.Errorf(".pub: %v, comment %q", err, comment)
	}
	line := KnownHostsLine("10.231.3.1", pub)
	_, hosts, key, _, _, err := ssh.ParseKnownHosts([]byte(line))
	if err != nil || len(hosts) != 1 || hosts[0] != "10.231.3.1" || string(key.Marshal()) != string(pub.Marshal()) {
		t.Errorf("known_hosts line %q: %v %v", line, hosts, err)
	}
}

// fakeTB records Skipf and Fatalf instead of ending the test.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper()                        {}
func (f *fakeTB) Skipf(format string, a ...any)  { f.skipped = fmt.Sprintf(format, a...) }
func (f *fakeTB) Fatalf(format string, a ...any) { f.failed = fmt.Sprintf(format, a...) }

func TestUnavailable(t *testing.T) {
	t.Setenv("MIGRATE_E2E_REQUIRE", "")
	f := &fakeTB{TB: t}
	Unavailable(f, "no %s", "sshd")
	if !strings.Contains(f.skipped, "no sshd") || f.failed != "" {
		t.Errorf("without MIGRATE_E2E_REQUIRE: skipped %q, failed %q", f.skipped, f.failed)
	}
	t.Setenv("MIGRATE_E2E_REQUIRE", "1")
	f = &fakeTB{TB: t}
	Unavailable(f, "no %s", "sshd")
	if !strings.Contains(f.failed, "no sshd") || f.skipped != "" {
		t.Errorf("with MIGRATE_E2E_REQUIRE=1: skipped %q, failed %q", f.skipped, f.failed)
	}
	f = &fakeTB{TB: t}
	RequireTools(f, "sh", "no-such-tool-for-testbed")
	if !strings.Contains(f.failed, "no-such-tool-for-testbed") || strings.Contains(f.failed, "sh,") {
		t.Errorf("RequireTools: %q", f.failed)
	}
}

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "migrate")); err != nil {
		t.Errorf("module root %s has no cmd/migrate: %v", root, err)
	}
}
