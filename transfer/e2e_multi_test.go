//go:build e2e

package transfer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/internal/testbed"
)

// TestE2EThreeServicesSideBySide captures nginx, BIND and Postfix on old,
// ships all three to new and runs them there together: HTTP bodies, DNS
// answers and SMTP delivery into the chroot's mailbox are checked from
// client; each runs in its own PID namespace and root; removing them
// leaves nothing.
func TestE2EThreeServicesSideBySide(t *testing.T) {
	bed := testbed.New(t, testbed.Options{PrivateDirs: []string{"/var/spool/postfix", "/var/mail", "/var/lib/postfix"}})
	testbed.RequireTools(t, "nginx", "named", "dig", "postfix", "nc", "curl")
	old := bed.Old

	// nginx
	docs := map[string]string{"/index.html": "<h1>old web</h1>\n", "/a/b.txt": "deep file\n"}
	for p, b := range docs {
		old.WriteFile(t, "/srv/www"+p, []byte(b), 0o644)
	}
	old.StartNginx(t, testbed.NginxOptions{Port: 80, Docroot: "/srv/www"})

	// BIND, listening on every address so that it serves on new's too.
	conf := `options { directory "/srv/bind"; pid-file "named.pid"; session-keyfile "session.key";
  listen-on port 53 { any; }; listen-on-v6 { none; }; recursion no; dnssec-validation no; };
zone "example.test" { type primary; file "example.test.db"; };
`
	zone := "$TTL 300\n@ IN SOA ns1 hostmaster 7 3600 600 86400 300\n@ NS ns1\n@ MX 10 mail\nns1 A 192.0.2.1\n" +
		"www A 192.0.2.10\nmail A 192.0.2.25\napp CNAME www\ntxt TXT \"hello migrate\"\n"
	old.WriteFile(t, "/srv/bind/named.conf", []byte(conf), 0o644)
	old.WriteFile(t, "/srv/bind/example.test.db", []byte(zone), 0o644)
	old.Start(t, "named", "named", "-g", "-c", "/srv/bind/named.conf")
	records := [][2]string{{"example.test", "SOA"}, {"example.test", "NS"}, {"example.test", "MX"}, {"ns1.example.test", "A"},
		{"www.example.test", "A"}, {"mail.example.test", "A"}, {"app.example.test", "CNAME"}, {"txt.example.test", "TXT"}}
	testbed.WaitFor(t, "named on old", 15*time.Second, func() error { _, err := dig(bed, old.Addr, records[0]); return err })

	// Postfix with its config in /srv/pf.
	old.MustExec(t, "mkdir", "-p", "/srv/pf")
	old.MustExec(t, "cp", "-a", "/etc/postfix/.", "/srv/pf/")
	old.MustExec(t, "postconf", "-c", "/srv/pf", "-e", "inet_interfaces = all", "inet_protocols = ipv4")
	old.Start(t, "postfix", "postfix", "-c", "/srv/pf", "start-fg")
	testbed.WaitFor(t, "postfix on old", 20*time.Second, func() error { return smtp(bed, old.Addr, "on old") })

	// nginx straight from old (captured into a temporary archive).
	if _, stderr, code := bed.Migrate(t, "transfer", "--from", old.SSHSpec(), "--service", "nginx", "--to", bed.New.SSHSpec(), "--name", "web"); code != 0 {
		t.Fatalf("transfer --from: %s", stderr)
	}
	for _, c := range []struct{ name, service string }{{"dns", "bind9"}, {"mail", "postfix"}} {
		archive := filepath.Join(t.TempDir(), c.name+".tar.zst")
		_, stderr, code := bed.Migrate(t, "capture", "--from", old.SSHSpec(), "--service", c.service, "-o", archive)
		if code != 0 {
			t.Fatalf("capture %s: %s", c.service, stderr)
		}
		if strings.Contains(stderr, "note:") {
			t.Logf("capture %s:\n%s", c.service, stderr)
		}
		stdout, stderr, code := bed.Migrate(t, "--json", "transfer", archive, "--to", bed.New.SSHSpec(), "--name", c.name)
		if code != 0 {
			t.Fatalf("transfer %s: %s", c.name, stderr)
		}
		s := lastSummary(t, stdout)
		t.Logf("%s: archive %d B, sent %d B (%.1f%%)", c.name, s.BytesArchive, s.BytesSent, 100*float64(s.BytesSent)/float64(s.BytesArchive))
	}
	stdout, stderr, code := bed.Migrate(t, "--json", "service", "start", "web", "dns", "mail", "--on", bed.New.SSHSpec())
	if code != 0 {
		for _, name := range []string{"web", "dns", "mail"} {
			if b, err := bed.New.ReadFile("/srv/migrate/" + name + "/service.log"); err == nil {
				t.Logf("%s's service.log on new:\n%s", name, b)
			}
		}
		t.Fatalf("service start: %s\n%s", stderr, stdout)
	}
	pids := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var st struct {
			Name   string
			PID    int
			Status string
		}
		json.Unmarshal([]byte(line), &st)
		if st.Status != "running" || st.PID == 0 {
			t.Fatalf("not running: %s", line)
		}
		pids[st.Name] = st.PID
	}

	// They share new's network but not files or processes.
	nsOf := func(pid int, what string) string { // pids are as new sees them
		return strings.TrimSpace(bed.New.MustExec(t, "readlink", fmt.Sprintf("/proc/%d/%s", pid, what)))
	}
	if nsOf(pids["web"], "ns/pid") == nsOf(pids["dns"], "ns/pid") || nsOf(pids["dns"], "ns/pid") == nsOf(pids["mail"], "ns/pid") {
		t.Error("services share a PID namespace")
	}
	if nsOf(pids["web"], "ns/net") != nsOf(pids["mail"], "ns/net") {
		t.Error("services do not share the target's network")
	}
	for name, pid := range pids {
		if root := nsOf(pid, "root"); root != "/srv/migrate/"+name+"/root" {
			t.Errorf("%s runs in root %q", name, root)
		}
	}

	for p, want := range docs {
		if got := string(curl(t, bed, bed.New.Addr, p)); got != want || got != string(curl(t, bed, old.Addr, p)) {
			t.Errorf("HTTP %s: new %q, want %q", p, got, want)
		}
	}
	for _, r := range records {
		a, err := dig(bed, old.Addr, r)
		if err != nil {
			t.Fatal(err)
		}
		b, err := dig(bed, bed.New.Addr, r)
		if err != nil || a != b || a == "" {
			t.Errorf("dig %s %s: old %q, new %q (%v)", r[0], r[1], a, b, err)
		}
	}
	if err := smtp(bed, bed.New.Addr, "migrated mail"); err != nil {
		t.Fatal(err)
	}
	testbed.WaitFor(t, "delivery into the chroot's mailbox", 30*time.Second, func() error {
		b, err := bed.New.ReadFile("/srv/migrate/mail/root/var/mail/www-data")
		if err != nil {
			return err
		}
		if !strings.Contains(string(b), "Subject: migrated mail") {
			return fmt.Errorf("mailbox lacks the message")
		}
		return nil
	})

	for _, name := range []string{"web", "dns", "mail"} {
		if _, stderr, code := bed.Migrate(t, "service", "remove", name, "--on", bed.New.SSHSpec()); code != 0 {
			t.Fatalf("remove %s: %s", name, stderr)
		}
		noResidue(t, bed, "/srv/migrate/"+name)
	}
}

func dig(bed *testbed.Bed, addr string, r [2]string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := bed.Client.Exec(ctx, "dig", "+noall", "+answer", "+time=1", "+tries=2", "@"+addr, r[0], r[1])
	if err != nil {
		return "", err
	}
	if len(strings.TrimSpace(string(out))) == 0 {
		return "", fmt.Errorf("no answer for %s %s from %s", r[0], r[1], addr)
	}
	return string(out), nil
}

func smtp(bed *testbed.Bed, addr, subject string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	msg := "HELO client\r\nMAIL FROM:<t@client.test>\r\nRCPT TO:<www-data@localhost>\r\nDATA\r\nSubject: " + subject +
		"\r\n\r\nhello\r\n.\r\nQUIT\r\n"
	cmd := bed.Client.Command(ctx, "nc", "-q", "3", addr, "25")
	cmd.Stdin = strings.NewReader(msg)
	out, err := cmd.Output()
	if err != nil {
		return err
	}
	if !strings.Contains(string(out), "250 2.0.0 Ok: queued") {
		return fmt.Errorf("smtp to %s: %q", addr, out)
	}
	return nil
}
