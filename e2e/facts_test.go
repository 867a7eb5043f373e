//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/internal/testbed"
)

// factsRecord is the part of a `migrate facts --json` record the tests
// look at (see internal/facts.Facts).
type factsRecord struct {
	Type     string `json:"type"`
	Host     string `json:"host"`
	Hostname string `json:"hostname"`
	Arch     string `json:"arch"`
	CPUs     int    `json:"cpus"`
	Kernel   string `json:"kernel"`
	OS       struct {
		ID        string `json:"id"`
		VersionID string `json:"version_id"`
	} `json:"os"`
	PackageManager string `json:"package_manager"`
	Mounts         []struct {
		Path string `json:"path"`
		Size uint64 `json:"size"`
	} `json:"mounts"`
	Sockets []socket `json:"sockets"`
}

type socket struct {
	Proto   string `json:"proto"`
	Address string `json:"address"`
	Port    int    `json:"port"`
	PID     int    `json:"pid"`
	Process string `json:"process"`
	Exe     string `json:"exe"`
	Package string `json:"package"`
}

// parseFacts decodes NDJSON stdout and returns the facts records by
// hostname. Every line must be a JSON object with a "type".
func parseFacts(t *testing.T, stdout string) map[string]factsRecord {
	t.Helper()
	recs := map[string]factsRecord{}
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		var typ struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal([]byte(line), &typ); err != nil || typ.Type == "" {
			t.Fatalf("--json line is not an NDJSON record with a type: %v: %q", err, line)
		}
		if typ.Type != "facts" {
			continue
		}
		var r factsRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("facts record: %v: %q", err, line)
		}
		recs[r.Hostname] = r
	}
	if len(recs) == 0 {
		t.Fatalf("no facts record in --json output:\n%s", stdout)
	}
	return recs
}

// dpkgOwner is the package dpkg says owns path on this machine (the hosts
// share the root file system and its dpkg database).
func dpkgOwner(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("dpkg-query", "-S", path).Output()
	if err != nil {
		testbed.Unavailable(t, "dpkg-query -S %s: %v", path, err)
	}
	pkg, _, _ := strings.Cut(strings.TrimSpace(string(out)), ":")
	return pkg
}

func findSocket(socks []socket, proto string, port int) *socket {
	for i, s := range socks {
		if s.Proto == proto && s.Port == port {
			return &socks[i]
		}
	}
	return nil
}

// TestFactsOverSSH runs `migrate facts` against old and new over real
// sshd, through the deployed agent: old reports its nginx with the owning
// package, new its sshd, and each report comes from the right host.
func TestFactsOverSSH(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t, testbed.Options{})
	bed.Old.StartNginx(t, testbed.NginxOptions{System: true})
	nginxPkg := dpkgOwner(t, "/usr/sbin/nginx")
	sshdPkg := dpkgOwner(t, "/usr/sbin/sshd")

	stdout, stderr, code := bed.Migrate(t, "--json", "facts", bed.Old.SSHSpec())
	if code != 0 {
		t.Fatalf("facts old: exit %d\n%s", code, stderr)
	}
	old, ok := parseFacts(t, stdout)[bed.Old.Hostname]
	if !ok {
		t.Fatalf("no facts for hostname %s (the agent must run on old):\n%s", bed.Old.Hostname, stdout)
	}
	web := findSocket(old.Sockets, "tcp", 80)
	if web == nil {
		t.Fatalf("old: no tcp socket on port 80: %+v", old.Sockets)
	}
	if web.Process != "nginx" || web.Exe != "/usr/sbin/nginx" || web.Package != nginxPkg || web.PID == 0 {
		t.Errorf("old :80 = %+v, want process nginx, exe /usr/sbin/nginx, package %s", *web, nginxPkg)
	}
	if nginxPkg != "nginx" {
		t.Logf("note: dpkg says /usr/sbin/nginx belongs to %s here", nginxPkg)
	}
	if old.OS.ID != "debian" || old.PackageManager != "dpkg" || old.Arch == "" || old.CPUs < 1 {
		t.Errorf("old: os %+v, package manager %q, arch %q, cpus %d", old.OS, old.PackageManager, old.Arch, old.CPUs)
	}
	if ssh := findSocket(old.Sockets, "tcp", 22); ssh == nil || ssh.Process != "sshd" || ssh.Package != sshdPkg {
		t.Errorf("old :22 = %+v, want sshd from %s", ssh, sshdPkg)
	}

	// Both hosts in one call; new has sshd but no web server, and its
	// private /srv is a separate tmpfs mount.
	stdout, stderr, code = bed.Migrate(t, "--json", "facts", bed.New.SSHSpec(), bed.Old.SSHSpec())
	if code != 0 {
		t.Fatalf("facts new old: exit %d\n%s", code, stderr)
	}
	recs := parseFacts(t, stdout)
	nw, ok := recs[bed.New.Hostname]
	if !ok || len(recs) != 2 {
		t.Fatalf("want facts for %s and %s, got %v", bed.New.Hostname, bed.Old.Hostname, keys(recs))
	}
	if s := findSocket(nw.Sockets, "tcp", 80); s != nil {
		t.Errorf("new reports a socket on port 80: %+v", *s)
	}
	if s := findSocket(nw.Sockets, "tcp", 22); s == nil || s.Address != bed.New.Addr || s.Exe != "/usr/sbin/sshd" {
		t.Errorf("new :22 = %+v, want sshd on %s", s, bed.New.Addr)
	}

	// The text table names the service too.
	stdout, stderr, code = bed.Migrate(t, "facts", bed.Old.SSHSpec())
	if code != 0 {
		t.Fatalf("facts old (text): exit %d\n%s", code, stderr)
	}
	for _, want := range []string{bed.Old.Hostname, "nginx", "/usr/sbin/nginx", nginxPkg, "80"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("text output lacks %q:\n%s", want, stdout)
		}
	}
}

func keys(m map[string]factsRecord) []string {
	var k []string
	for h := range m {
		k = append(k, h)
	}
	return k
}

// TestUnreachableHost: an address in the bed's subnet that no host holds
// fails within --connect-timeout with a one-line error.
func TestUnreachableHost(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t, testbed.Options{NoSSH: true})
	start := time.Now()
	_, stderr, code := bed.Migrate(t, "--connect-timeout", "2s", "facts", "ssh://root@"+bed.UnusedAddr()+":22")
	took := time.Since(start)
	if code == 0 || code == 2 {
		t.Errorf("exit %d, want a runtime failure", code)
	}
	// Without the timeout, the kernel gives up on the unanswered ARP
	// after about 3 s ("no route to host"); the timeout must fire first.
	// The upper bound leaves room for a loaded machine.
	if took < 2*time.Second || took > 8*time.Second {
		t.Errorf("took %v with --connect-timeout 2s", took)
	}
	if low := strings.ToLower(stderr); !strings.Contains(low, "timed out") && !strings.Contains(low, "timeout") {
		t.Errorf("the error does not say the connection timed out:\n%s", stderr)
	}
	var errLines []string
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if !strings.HasPrefix(l, "migrate: hint:") {
			errLines = append(errLines, l)
		}
	}
	if len(errLines) != 1 || !strings.HasPrefix(errLines[0], "migrate: error: ") || !strings.Contains(errLines[0], bed.UnusedAddr()) {
		t.Errorf("want one `migrate: error:` line naming %s, got:\n%s", bed.UnusedAddr(), stderr)
	}

	// With --json, stdout stays empty and stderr ends with an exit_error record.
	stdout, stderr, code := bed.Migrate(t, "--json", "--connect-timeout", "1s", "facts", "root@"+bed.UnusedAddr())
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	var rec struct {
		Type     string `json:"type"`
		Error    string `json:"error"`
		ExitCode int    `json:"exit_code"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rec); err != nil || rec.Type != "exit_error" ||
		rec.ExitCode != code || !strings.Contains(rec.Error, bed.UnusedAddr()) {
		t.Errorf("--json: last stderr line is not an exit_error record with exit code %d: %v\n%s", code, err, stderr)
	}
	if stdout != "" {
		t.Errorf("--json: stdout after a failure: %q", stdout)
	}
}

// TestTwoBedsAtOnce runs facts on the old hosts of two beds that exist at
// the same time: separate subnets, separate hosts.
func TestTwoBedsAtOnce(t *testing.T) {
	t.Parallel()
	a := testbed.New(t, testbed.Options{})
	b := testbed.New(t, testbed.Options{})
	if a.Subnet == b.Subnet {
		t.Fatalf("both beds on %s", a.Subnet)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type result struct {
		bed            *testbed.Bed
		stdout, stderr string
		err            error
	}
	res := make(chan result, 2)
	for _, bed := range []*testbed.Bed{a, b} {
		cmd := bed.MigrateCmd(ctx, t, "--json", "facts", bed.Old.SSHSpec())
		go func() {
			var out, errb strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			res <- result{bed, out.String(), errb.String(), err}
		}()
	}
	for range 2 {
		r := <-res
		if r.err != nil {
			t.Errorf("%s: %v\n%s", r.bed.Subnet, r.err, r.stderr)
			continue
		}
		if _, ok := parseFacts(t, r.stdout)[r.bed.Old.Hostname]; !ok {
			t.Errorf("%s: no facts from %s:\n%s", r.bed.Subnet, r.bed.Old.Hostname, r.stdout)
		}
	}
}
