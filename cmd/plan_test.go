package cmd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/migrate"
)

func TestPlanFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"plan", "--to", "local", "--service", "nginx"}, "migrate: error: --from is required\n"},
		{[]string{"plan", "--from", "local", "--service", "nginx"}, "migrate: error: --to is required\n"},
		{[]string{"plan", "--from", "local", "--to", "root@h"}, "migrate: error: --service or --port is required\n"},
		{[]string{"plan", "--from", "local", "--to", "local", "--service", "x"}, "migrate: error: --from and --to are the same host\n"},
		{[]string{"plan", "--from", "local", "--to", "root@h", "--service", "x", "--name", "a", "--dir", "b"}, "migrate: error: give --name or --dir, not both\n"},
		{[]string{"plan", "--from", "local", "--to", "root@h", "--service", "x", "--dns-server", "127.0.0.1"}, "migrate: error: --dns-server needs --domain\n"},
		{[]string{"plan", "--from", "local", "--to", "root@h", "--service", "x", "--name", "a/b"}, "migrate: error: --name \"a/b\": want a plain name (use --dir for a path)\n"},
		{[]string{"drain", "x", "--then", "stop-proxy"}, "migrate: error: --then needs --watch\n"},
		{[]string{"drain", "x", "--watch", "--then", "reboot"}, "migrate: error: --then \"reboot\": want one of stop-proxy, remove-agent, take-address\n"},
		{[]string{"drain", "x", "--quiet-for", "0s"}, "migrate: error: --quiet-for must be at least 1s\n"},
	} {
		_, stderr, code := runMigrate(t, c.args...)
		if code != 2 || !strings.HasPrefix(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q, want 2 and %q", c.args, code, stderr, c.want)
		}
	}
}

func TestPlanExistingDirRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "web")
	m, err := migrate.Create(dir, &migrate.Plan{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	_, stderr, code := runMigrate(t, "plan", "--from", "local", "--to", "root@127.0.0.1", "--service", "nginx", "--dir", dir)
	if code != 1 || !strings.Contains(stderr, "migrate: error: migration "+dir+" already exists\nmigrate: hint: ") {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
}

func samplePlan() *migrate.Plan {
	t0 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	p := &migrate.Plan{Name: "web", From: "ssh://root@10.0.0.1", To: "ssh://root@10.0.0.2", Service: "nginx",
		Domains: []string{"www.example.test"}}
	p.Hosts.Old = migrate.HostSummary{Spec: p.From, Hostname: "old", OS: "Debian GNU/Linux 12 (bookworm)", Arch: "x86_64", CPUs: 2, MemTotal: 1 << 30}
	p.Hosts.New = migrate.HostSummary{Spec: p.To, Hostname: "new", OS: "Debian GNU/Linux 12 (bookworm)", Arch: "x86_64", CPUs: 2, MemTotal: 1 << 30, DiskPath: "/srv", DiskAvail: 10 << 30}
	p.Move = &migrate.MoveSection{Measured: true, Files: 10, Bytes: 3 << 20, Parts: []migrate.MovePart{{Kind: "packages", Files: 8, Bytes: 3 << 20}, {Kind: "config", Files: 2, Bytes: 100}},
		PresentBytes: 1 << 20, TargetKnown: true, BytesToSend: 2 << 20, Bandwidth: migrate.DefaultBandwidth, EstTransfer: time.Second, EstCutover: 5 * time.Second, Packages: []string{"nginx-core"}}
	p.DNS = &migrate.DNSSection{Zone: "example.test.", Consistent: true, Servers: []migrate.DNSServer{{Server: "127.0.0.1:53", Serial: 7}},
		Records: []migrate.DNSRecord{{Name: "www.example.test.", Type: "A", TTL: time.Hour, Value: "10.0.0.1"}},
		MaxTTL:  time.Hour, LowTTL: time.Minute, LowerBy: t0, CutoverAfter: t0.Add(time.Hour), EarliestComplete: t0.Add(time.Hour)}
	tr := &migrate.HourTraffic{Path: "/var/log/nginx/access.log", Format: "combined", Parsed: 240, Zone: "+00:00", QuietHour: 3, PeakHour: 15,
		First: t0, Last: t0.Add(47 * time.Hour)}
	for h := range 24 {
		d := (h - 3 + 24) % 24
		d = min(d, 24-d)
		tr.Covered[h] = 2
		tr.PerHour[h] = float64(1 + d)
		tr.Hours[h] = int64(2 * tr.PerHour[h])
	}
	p.Traffic = tr
	p.Config = &migrate.ConfigScan{Service: "nginx", Kind: "nginx"}
	p.Risks = migrate.Risks(p)
	return p
}

func TestPlanText(t *testing.T) {
	var b strings.Builder
	if err := printPlanText(&b, "web", samplePlan(), time.Date(2026, 11, 22, 0, 10, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"\nHOSTS\n", "\nWHAT WILL MOVE\n", "  total  10 files  3.0 MiB", "to send after dedupe: 2.0 MiB",
		"\nDNS (zone example.test)\n", "www.example.test.  1h0m0s  A  10.0.0.1", "lower the TTLs to 1m0s now",
		"\nTRAFFIC BY HOUR OF DAY (/var/log/nginx/access.log, combined, times UTC+00:00)\n",
		"quietest hour: 03:00-04:00 (UTC+00:00)", "next one starts 2026-11-22 03:00 +00:00",
		"\nRISKS\n", "(proxy-address)", "set_real_ip_from 10.0.0.1;", "(long-ttl)", "(no-secondary-ns)"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan text lacks %q", want)
		}
	}
	var line03 string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "  03  ") {
			line03 = l
		}
	}
	if !strings.HasSuffix(line03, "<- quietest") {
		t.Errorf("hour 03 not marked quietest: %q\n%s", line03, out)
	}
	if t.Failed() {
		t.Log(out)
	}
}

func TestStatusAndDrainLocal(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "web")
	logPath := filepath.Join(t.TempDir(), "proxy.log")
	if err := os.WriteFile(logPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := migrate.Create(dir, samplePlan())
	if err != nil {
		t.Fatal(err)
	}
	m.Journal.Append(migrate.StepPlan, migrate.StepDone, nil, nil)
	m.Journal.Append(migrate.StepTakeover, migrate.StepDone, migrate.ProxyState{Host: "local", AccessLog: logPath}, nil)
	m.Journal.Append(migrate.StepDNS, migrate.StepFailed, nil, os.ErrDeadlineExceeded)
	m.Close()

	stdout, stderr, code := runMigrate(t, "status", dir)
	if code != 0 || !strings.Contains(stdout, "takeover    done") || !strings.Contains(stdout, "dns-switch  failed") ||
		!strings.Contains(stdout, "i/o timeout") || !strings.Contains(stdout, "Next: migrate cutover "+dir) {
		t.Fatalf("status: exit %d\n%s%s", code, stdout, stderr)
	}
	stdout, _, code = runMigrate(t, "--json", "status", dir)
	recs := strings.Split(strings.TrimSpace(stdout), "\n")
	var first, last map[string]any
	json.Unmarshal([]byte(recs[0]), &first)
	json.Unmarshal([]byte(recs[len(recs)-1]), &last)
	if code != 0 || len(recs) != 4 || first["type"] != "status" || first["service"] != "nginx" || last["type"] != "step" || last["state"] != "failed" {
		t.Fatalf("status --json: exit %d\n%s", code, stdout)
	}
	// The plan names domains and the DNS switch failed: drain refuses.
	_, stderr, code = runMigrate(t, "drain", dir)
	if code != 1 || !strings.Contains(stderr, "the DNS has not been switched yet") {
		t.Fatalf("drain before the switch: exit %d %s", code, stderr)
	}
	m, _ = migrate.Open(dir)
	m.Journal.Append(migrate.StepDNS, migrate.StepDone, migrate.DNSSwitch{CachesExpire: time.Now().Add(-time.Second)}, nil)
	m.Close()
	stdout, stderr, code = runMigrate(t, "drain", dir, "--quiet-for", "1s")
	if code != 0 || !strings.Contains(stdout, "DRAINED") {
		t.Fatalf("one-off drain of a silent log: exit %d\n%s%s", code, stdout, stderr)
	}
	stdout, stderr, code = runMigrate(t, "--json", "drain", dir, "--watch", "--quiet-for", "1s", "--interval", "100ms")
	recs = strings.Split(strings.TrimSpace(stdout), "\n")
	json.Unmarshal([]byte(recs[len(recs)-1]), &last)
	if code != 0 || last["type"] != "summary" || last["drained"] != true || len(recs) < 10 {
		t.Fatalf("drain --watch: exit %d\n%s%s", code, stdout, stderr)
	}
	stdout, _, _ = runMigrate(t, "status", dir)
	if !strings.Contains(stdout, "drain       done") || strings.Contains(stdout, "Next:") {
		t.Fatalf("status after drain:\n%s", stdout)
	}
}

// TestPlanFailuresLeaveNothing: an unreachable host or a bad TSIG key is an
// error with a hint, and no migration directory is left behind.
func TestPlanFailuresLeaveNothing(t *testing.T) {
	base := t.TempDir()
	badKey := filepath.Join(base, "bad.key")
	os.WriteFile(badKey, []byte("not a key"), 0o600)
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"unreachable", []string{"--connect-timeout", "2s", "plan", "--from", "local", "--to", "ssh://root@" + refusedAddr(t), "--service", "nginx"}, "migrate: error: "},
		{"bad key", []string{"plan", "--from", "local", "--to", "ssh://root@" + refusedAddr(t), "--service", "nginx", "--domain", "www.example.test", "--tsig-key", badKey}, "migrate: error: tsig key " + badKey + ": "},
	} {
		dir := filepath.Join(base, c.name)
		_, stderr, code := runMigrate(t, append(c.args, "--dir", dir)...)
		if code != 1 || !strings.Contains(stderr, c.want) || !strings.Contains(stderr, "\nmigrate: hint: ") {
			t.Errorf("%s: exit %d, stderr %q", c.name, code, stderr)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s: %s left behind (%v)", c.name, dir, err)
		}
	}
}

func TestDrainNotAMigration(t *testing.T) {
	_, stderr, code := runMigrate(t, "drain", t.TempDir())
	if code != 1 || !strings.Contains(stderr, "not a migration directory\nmigrate: hint: create one with `migrate plan") {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
	_, stderr, code = runMigrate(t, "status", t.TempDir())
	if code != 1 || !strings.Contains(stderr, "not a migration directory\nmigrate: hint: ") {
		t.Fatalf("status: exit %d stderr %q", code, stderr)
	}
}
