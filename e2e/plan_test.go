//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/migrate-tool/migrate/internal/testbed"
)

// pdShape is requests per hour of day in the generated access logs: busy
// afternoons, quietest at 03:00.
func pdShape(hr int) int {
	d := (hr - 3 + 24) % 24
	d = min(d, 24-d)
	return 3 + 5*d
}

// pdShapeLog is an nginx combined log of days full days before end with
// pdShape(h) requests in each hour h, in zone +09:00.
func pdShapeLog(end time.Time, days int) ([]byte, int) {
	zone := time.FixedZone("", 9*3600)
	start := end.In(zone).Truncate(24*time.Hour).AddDate(0, 0, -days)
	start = time.Date(start.Year(), start.Month(), start.Day(), 0, 0, 0, 0, zone)
	var b strings.Builder
	n := 0
	for day := range days {
		for hr := range 24 {
			k := pdShape(hr)
			for i := range k {
				t := start.Add(time.Duration(day*24+hr)*time.Hour + time.Duration(i)*time.Hour/time.Duration(k))
				fmt.Fprintf(&b, "198.51.100.%d - - [%s] \"GET /p%d HTTP/1.1\" 200 %d \"-\" \"shape/1\"\n",
					1+i%40, t.Format("02/Jan/2006:15:04:05 -0700"), i, 100+i)
				n++
			}
		}
	}
	return []byte(b.String()), n
}

// pdBIND is a BIND primary (127.0.0.1) and secondary (127.0.0.2) serving
// example.test, with TSIG updates allowed on the primary.
type pdBIND struct {
	Dir               string
	Primary, Second   string // ADDR:PORT
	KeyFile           string
	primPort, secPort int
}

const pdKeySecret = "dGVzdC1vbmx5LWtleS1mb3ItbWlncmF0aW9uLXRlc3Q="

// pdFreePort finds a port free for TCP and UDP on both loopback addresses.
func pdFreePort(t *testing.T, avoid int) int {
	for range 200 {
		p := 20000 + rand.IntN(20000)
		if p == avoid {
			continue
		}
		ok := true
		var closers []func() error
		for _, a := range []string{"127.0.0.1", "127.0.0.2"} {
			addr := net.JoinHostPort(a, fmt.Sprint(p))
			if l, err := net.Listen("tcp", addr); err == nil {
				closers = append(closers, l.Close)
			} else {
				ok = false
			}
			if c, err := net.ListenPacket("udp", addr); err == nil {
				closers = append(closers, c.Close)
			} else {
				ok = false
			}
		}
		for _, c := range closers {
			c()
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

// pdStartBIND starts the two servers with records for www (ttl) and mail.
func pdStartBIND(t *testing.T, wwwAddr string, ttl int, extra ...string) *pdBIND {
	t.Helper()
	testbed.RequireTools(t, "named", "nsupdate", "ip")
	// Binding 127.0.0.2 works without the address (lo routes 127/8), but
	// named listens only on the addresses its interfaces list.
	if out, err := exec.Command("ip", "-o", "addr", "show", "dev", "lo").Output(); err != nil || !strings.Contains(string(out), " 127.0.0.2/") {
		if out, err := exec.Command("ip", "addr", "add", "127.0.0.2/8", "dev", "lo").CombinedOutput(); err != nil && !strings.Contains(string(out), "File exists") {
			t.Fatalf("ip addr add 127.0.0.2/8 dev lo: %v: %s", err, out)
		}
	}
	b := &pdBIND{Dir: t.TempDir()}
	b.primPort = pdFreePort(t, 0)
	b.secPort = pdFreePort(t, b.primPort)
	b.Primary = fmt.Sprintf("127.0.0.1:%d", b.primPort)
	b.Second = fmt.Sprintf("127.0.0.2:%d", b.secPort)
	b.KeyFile = filepath.Join(b.Dir, "tsig.key")
	write := func(p, s string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(b.KeyFile, `key "migrate-key" { algorithm hmac-sha256; secret "`+pdKeySecret+`"; };`+"\n")
	write(filepath.Join(b.Dir, "primary/example.test.db"), fmt.Sprintf(`$TTL 3600
@ IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 60
@ IN NS ns1
@ IN NS ns2
@ IN MX 10 mail
ns1 IN A 127.0.0.1
ns2 IN A 127.0.0.2
www %d IN A %s
mail IN A %s
%s
`, ttl, wwwAddr, wwwAddr, strings.Join(extra, "\n")))
	write(filepath.Join(b.Dir, "primary/named.conf"), fmt.Sprintf(`include "%[1]s/tsig.key";
options { directory "%[1]s/primary"; pid-file "named.pid"; session-keyfile "session.key";
  listen-on port %[2]d { 127.0.0.1; }; listen-on-v6 { none; }; recursion no; dnssec-validation no;
  notify explicit; also-notify { 127.0.0.2 port %[3]d; }; notify-source 127.0.0.1;
  notify-delay 0; allow-transfer { key migrate-key; }; };
zone "example.test" { type primary; file "example.test.db"; allow-update { key migrate-key; }; };
`, b.Dir, b.primPort, b.secPort))
	write(filepath.Join(b.Dir, "secondary/named.conf"), fmt.Sprintf(`include "%[1]s/tsig.key";
options { directory "%[1]s/secondary"; pid-file "named.pid"; session-keyfile "session.key";
  listen-on port %[3]d { 127.0.0.2; }; listen-on-v6 { none; }; recursion no; dnssec-validation no;
  notify no; transfer-source 127.0.0.2; allow-transfer { key migrate-key; }; };
zone "example.test" { type secondary; primaries { 127.0.0.1 port %[2]d key migrate-key; }; file "example.test.db"; };
`, b.Dir, b.primPort, b.secPort))
	for _, role := range []string{"primary", "secondary"} {
		testbed.StartDaemon(t, b.Dir, role, nil, "named", "-g", "-c", filepath.Join(b.Dir, role, "named.conf"))
	}
	for _, s := range []string{b.Primary, b.Second} {
		pdWait(t, "BIND "+s+" serving www", 15*time.Second, func() error {
			_, err := pdLookupA(s, "www.example.test.")
			return err
		})
	}
	return b
}

// pdLookupA asks server for name's A records.
func pdLookupA(server, name string) ([]string, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	c := &dns.Client{Timeout: time.Second}
	r, _, err := c.Exchange(m, server)
	if err != nil {
		return nil, err
	}
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
		return nil, fmt.Errorf("%s: rcode %s, %d answers", server, dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out, nil
}

// SetWWW points www at addr with nsupdate (TSIG) on the primary.
func (b *pdBIND) SetWWW(t *testing.T, addr string, ttl int) {
	t.Helper()
	script := fmt.Sprintf("server 127.0.0.1 %d\nzone example.test\nupdate delete www.example.test. A\nupdate add www.example.test. %d A %s\nsend\n", b.primPort, ttl, addr)
	cmd := exec.Command("nsupdate", "-k", b.KeyFile)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nsupdate: %v: %s", err, out)
	}
}

func pdWait(t *testing.T, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("waiting for %s: %v", what, err)
}

// TestPlanOnTestBed runs `migrate plan` between the bed's old and new hosts
// for nginx, with a real BIND primary and secondary and an access log of a
// known shape, and checks every section of the plan.
func TestPlanOnTestBed(t *testing.T) {
	bed := testbed.New(t, testbed.Options{})
	bed.Old.StartNginx(t, testbed.NginxOptions{Port: 80})
	logData, lines := pdShapeLog(time.Now(), 3)
	bed.Old.WriteFile(t, "/var/log/nginx/access.log", logData, 0o644)
	b := pdStartBIND(t, bed.Old.Addr, 3600)

	dir := filepath.Join(t.TempDir(), "web")
	args := []string{"plan", "--from", bed.Old.SSHSpec(), "--to", bed.New.SSHSpec(), "--service", "nginx", "--dir", dir,
		"--domain", "www.example.test", "--dns-server", b.Primary, "--dns-server", b.Second, "--tsig-key", b.KeyFile}
	stdout, stderr, code := bed.Migrate(t, args...)
	if code != 0 {
		t.Fatalf("plan: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{
		"\nHOSTS\n", "\nWHAT WILL MOVE\n", "  packages  ", "already on the target: ", "to send after dedupe: ",
		"\nDNS (zone example.test)\n", "servers agree: yes",
		"lower the TTLs to 1m0s now", "earliest a switch can be complete: ",
		"\nTRAFFIC BY HOUR OF DAY (/var/log/nginx/access.log, combined, times UTC+09:00)\n",
		"quietest hour: 03:00-04:00 (UTC+09:00)",
		"\nSUGGESTED CUTOVER\n", " 03:00 +09:00: the first quietest hour after the lowered TTLs are in effect",
		"\nRISKS\n", "(proxy-address)", "set_real_ip_from " + bed.Old.Addr + ";", "(long-ttl)", "(no-secondary-mx)",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("plan output lacks %q", want)
		}
	}
	if !regexp.MustCompile(`\n +www\.example\.test\. +1h0m0s +A +` + regexp.QuoteMeta(bed.Old.Addr) + `\n`).MatchString(stdout) {
		t.Error("plan output lacks the A record of www with its TTL")
	}
	for _, l := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(l, "  03  ") && !strings.HasSuffix(l, "<- quietest") {
			t.Errorf("hour 03 not marked: %q", l)
		}
	}
	if strings.Contains(stdout, "tsig") || strings.Contains(stdout, pdKeySecret) || strings.Contains(stderr, pdKeySecret) {
		t.Error("the TSIG secret is printed")
	}
	if t.Failed() {
		t.Logf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	}

	// plan.json holds the same, and status shows the plan step.
	var p struct {
		Traffic struct {
			QuietHour int   `json:"quiet_hour"`
			Parsed    int64 `json:"parsed"`
		} `json:"traffic"`
		Move struct {
			Measured    bool  `json:"measured"`
			Files       int   `json:"files"`
			BytesToSend int64 `json:"bytes_to_send"`
		} `json:"move"`
		DNS struct {
			Consistent bool  `json:"consistent"`
			MaxTTL     int64 `json:"max_ttl_ns"`
		} `json:"dns"`
		Hosts struct {
			New struct {
				DiskAvail uint64 `json:"disk_avail"`
			} `json:"new"`
		} `json:"hosts"`
		TSIGKeyFile string `json:"tsig_key_file"`
	}
	raw, err := os.ReadFile(filepath.Join(dir, "plan.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	// The log has the generated lines plus nginx's own from the readiness probe, maybe.
	if p.Traffic.QuietHour != 3 || p.Traffic.Parsed < int64(lines) || p.Traffic.Parsed > int64(lines)+5 {
		t.Errorf("plan.json traffic: %+v (wrote %d lines)", p.Traffic, lines)
	}
	if !p.Move.Measured || p.Move.Files < 10 || !p.DNS.Consistent || p.DNS.MaxTTL != int64(time.Hour) || p.Hosts.New.DiskAvail == 0 {
		t.Errorf("plan.json: %+v", p)
	}
	if strings.Contains(string(raw), pdKeySecret) || p.TSIGKeyFile != b.KeyFile {
		t.Error("plan.json holds the secret, or not the key file path")
	}
	stdout, _, code = bed.Migrate(t, "status", dir)
	if code != 0 || !strings.Contains(stdout, "plan  done") || !strings.Contains(stdout, "Next: migrate capture "+dir) {
		t.Errorf("status: exit %d\n%s", code, stdout)
	}
	// The same migration cannot be planned twice; the --json plan of
	// another name is one NDJSON record.
	if _, stderr, code := bed.Migrate(t, args...); code != 1 || !strings.Contains(stderr, "already exists") {
		t.Errorf("second plan: exit %d %s", code, stderr)
	}
	dir2 := filepath.Join(t.TempDir(), "web2")
	// Named by its port only: the dry run finds nginx, and its log.
	stdout, stderr, code = bed.Migrate(t, "--json", "plan", "--from", bed.Old.SSHSpec(), "--to", bed.New.SSHSpec(), "--port", "80", "--dir", dir2)
	var rec map[string]any
	if code != 0 || strings.Count(stdout, "\n") != 1 || json.Unmarshal([]byte(stdout), &rec) != nil || rec["type"] != "plan" {
		t.Fatalf("plan --json: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if tr, _ := rec["traffic"].(map[string]any); rec["service"] != "nginx" || tr == nil || tr["quiet_hour"] != float64(3) {
		t.Errorf("plan --port 80: service %v, traffic %v", rec["service"], tr)
	}
	risks, _ := rec["risks"].([]any)
	var ids []string
	for _, r := range risks {
		ids = append(ids, r.(map[string]any)["id"].(string))
	}
	if got := strings.Join(ids, ","); !strings.Contains(got, "proxy-address") || !strings.Contains(got, "no-dns") {
		t.Errorf("--json risks %q", got)
	}
}

// pdFakeSMTP listens on addr and answers RCPT TO with 250 when accept,
// else 554; it counts DATA commands (there must be none).
func pdFakeSMTP(t *testing.T, addr string, accept bool) *atomic.Int32 {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	data := new(atomic.Int32)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				r := bufio.NewReader(c)
				say := func(s string) { c.Write([]byte(s + "\r\n")) }
				say("220 fake ESMTP")
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
					case strings.HasPrefix(cmd, "RCPT") && !accept:
						say("554 5.7.1 Relay access denied")
					case cmd == "DATA":
						data.Add(1)
						say("554 no")
					case cmd == "QUIT":
						say("221 bye")
						return
					default:
						say("250 ok")
					}
				}
			}()
		}
	}()
	return data
}

// TestPlanMailBackupMX: for a mail service the plan asks each MX, over
// SMTP, whether it accepts mail for the domain, and flags a backup MX that
// refuses (seed 004's telnet test).
func TestPlanMailBackupMX(t *testing.T) {
	bed := testbed.New(t, testbed.Options{})
	port := pdFreePort(t, 0)
	d1 := pdFakeSMTP(t, fmt.Sprintf("127.0.0.3:%d", port), true)
	d2 := pdFakeSMTP(t, fmt.Sprintf("127.0.0.4:%d", port), false)
	b := pdStartBIND(t, bed.Old.Addr, 300, "@ IN MX 20 mx2", "mx2 IN A 127.0.0.4", "relay IN A 127.0.0.3")
	// mail (MX 10) must point at the accepting fake: replace its A record.
	script := fmt.Sprintf("server 127.0.0.1 %d\nzone example.test\nupdate delete mail.example.test. A\nupdate add mail.example.test. 300 A 127.0.0.3\nsend\n", b.primPort)
	cmd := exec.Command("nsupdate", "-k", b.KeyFile)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nsupdate: %v: %s", err, out)
	}
	pdWait(t, "secondary to follow", 10*time.Second, func() error {
		a, err := pdLookupA(b.Second, "mail.example.test.")
		if err == nil && (len(a) != 1 || a[0] != "127.0.0.3") {
			err = fmt.Errorf("mail is %v", a)
		}
		return err
	})
	dir := filepath.Join(t.TempDir(), "mail")
	stdout, stderr, code := bed.Migrate(t, "plan", "--from", bed.Old.SSHSpec(), "--to", bed.New.SSHSpec(), "--service", "postfix",
		"--dir", dir, "--domain", "example.test", "--dns-server", b.Primary, "--dns-server", b.Second, "--smtp-port", fmt.Sprint(port))
	if code != 0 {
		t.Fatalf("plan: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{
		"primary MX 10 mail.example.test. (127.0.0.3): RCPT TO:<postmaster@example.test> accepts",
		"backup MX 20 mx2.example.test. (127.0.0.4): RCPT TO:<postmaster@example.test> refuses (554 5.7.1 Relay access denied)",
		"[high] backup MX mx2.example.test. refuses mail for postmaster@example.test (backup-mx-refuses)",
		"WHAT WILL MOVE\n  not yet measured: ", // no postfix runs on old
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("plan output lacks %q", want)
		}
	}
	if strings.Contains(stdout, "(no-secondary-mx)") || d1.Load() != 0 || d2.Load() != 0 {
		t.Errorf("no-secondary-mx flagged with a backup MX, or DATA sent (%d, %d)", d1.Load(), d2.Load())
	}
	if t.Failed() {
		t.Logf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	}
}
