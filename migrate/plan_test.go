package migrate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// quietShape is requests per hour of day for the generated logs: busy
// afternoons, quietest at 03:00.
func quietShape(hr int) int {
	d := hr - 3
	if d < 0 {
		d = -d
	}
	if d > 12 {
		d = 24 - d
	}
	return 4 + 6*d
}

// genShapeLog returns an nginx combined log of days days from start with
// quietShape(h) requests in each hour h, and the number of lines.
func genShapeLog(start time.Time, days int) ([]byte, int) {
	var b strings.Builder
	n := 0
	for day := range days {
		for hr := range 24 {
			k := quietShape(hr)
			for i := range k {
				t := start.Add(time.Duration(day*24+hr)*time.Hour + time.Duration(i)*time.Hour/time.Duration(k))
				fmt.Fprintf(&b, "198.51.100.%d - - [%s] \"GET /p%d HTTP/1.1\" 200 %d \"-\" \"test/1.0\"\n",
					1+i%50, t.Format("02/Jan/2006:15:04:05 -0700"), i, 100+i)
				n++
			}
		}
	}
	return []byte(b.String()), n
}

func TestLogHistKnownShape(t *testing.T) {
	dir := t.TempDir()
	zone := time.FixedZone("JST", 9*3600)
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, zone)
	// Two days in the rotated file, one in the current one.
	older, n1 := genShapeLog(start, 2)
	cur, n2 := genShapeLog(start.Add(48*time.Hour), 1)
	path := filepath.Join(dir, "access.log")
	if err := os.WriteFile(path+".1", older, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(cur, "garbage line\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := ReadLogHist(context.Background(), LogHistParams{Path: path, Rotated: true})
	if err != nil {
		t.Fatal(err)
	}
	if h.Parsed != int64(n1+n2) || h.Skipped != 1 || h.Lines != int64(n1+n2+1) {
		t.Fatalf("parsed %d skipped %d lines %d, want %d, 1, %d", h.Parsed, h.Skipped, h.Lines, n1+n2, n1+n2+1)
	}
	if h.QuietHour != 3 || h.PeakHour != 15 {
		t.Fatalf("quiet hour %d peak %d, want 3 and 15 (per hour %v)", h.QuietHour, h.PeakHour, h.PerHour)
	}
	if h.Zone != "+09:00" || h.Format != "combined" || len(h.Files) != 2 {
		t.Fatalf("zone %q format %q files %v", h.Zone, h.Format, h.Files)
	}
	for hr := range 23 {
		if got, want := h.PerHour[hr], float64(quietShape(hr)); got < want-0.1 || got > want+0.1 {
			t.Errorf("per hour[%d] = %.2f, want %v", hr, got, want)
		}
	}
	if _, err := ReadLogHist(context.Background(), LogHistParams{Path: filepath.Join(dir, "missing.log")}); err == nil {
		t.Fatal("missing log: no error")
	}
}

func TestNextHour(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		now  string
		hour int
		zone string
		want string
	}{
		{"2026-11-22T00:10:00Z", 3, "+00:00", "2026-11-22T03:00:00Z"},
		{"2026-11-22T03:30:00Z", 3, "+00:00", "2026-11-22T03:30:00Z"},
		{"2026-11-22T04:00:00Z", 3, "+00:00", "2026-11-23T03:00:00Z"},
		{"2026-11-22T00:10:00Z", 3, "+09:00", "2026-11-22T18:00:00Z"}, // 03:00 JST on the 23rd
	} {
		if got := NextHour(at(c.now), c.hour, c.zone); !got.Equal(at(c.want)) {
			t.Errorf("NextHour(%s, %d, %s) = %s, want %s", c.now, c.hour, c.zone, got.UTC().Format(time.RFC3339), c.want)
		}
	}
}

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, body := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestInspectNginx(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"/etc/nginx/nginx.conf": `user www-data;
http {
	log_format main '$remote_addr - [$time_local] "$request" "$http_x_forwarded_for"';
	access_log /var/log/nginx/site.log main; # the site
	include /etc/nginx/conf.d/*.conf;
	include mime.types;
}`,
		"/etc/nginx/mime.types": "types { text/html html; }\n",
		"/etc/nginx/conf.d/admin.conf": `server {
	listen 80;
	location /admin {
		allow 192.0.2.0/24;
		deny all;
	}
	if ($remote_addr = "198.51.100.7") { return 403; }
}`,
	})
	cs := InspectConfig(InspectParams{Service: "nginx", Root: root})
	if cs.Kind != "nginx" || len(cs.Files) != 3 {
		t.Fatalf("kind %q files %v", cs.Kind, cs.Files)
	}
	if len(cs.AccessRules) != 2 || !strings.HasPrefix(cs.AccessRules[0], "/etc/nginx/conf.d/admin.conf:4: allow 192.0.2.0/24") {
		t.Fatalf("access rules %q", cs.AccessRules)
	}
	if len(cs.AccessLogs) != 1 || cs.AccessLogs[0] != "/var/log/nginx/site.log" || len(cs.ForwardedForLog) != 1 || len(cs.RealIP) != 0 {
		t.Fatalf("logs %v xff %v realip %v", cs.AccessLogs, cs.ForwardedForLog, cs.RealIP)
	}
	writeTree(t, root, map[string]string{"/etc/nginx/conf.d/realip.conf": "set_real_ip_from 10.0.0.1;\nreal_ip_header X-Forwarded-For;\n"})
	if cs := InspectConfig(InspectParams{Service: "nginx", Root: root}); len(cs.RealIP) != 2 {
		t.Fatalf("real ip %v", cs.RealIP)
	}
	if cs := InspectConfig(InspectParams{Service: "nginx", Root: t.TempDir()}); cs.Kind != "" || cs.Note == "" {
		t.Fatalf("no config: %+v", cs)
	}
}

func riskIDs(rs []Risk) string {
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.ID)
	}
	return strings.Join(ids, ",")
}

func TestRisks(t *testing.T) {
	now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	host := func(arch, os string, avail uint64) HostSummary {
		return HostSummary{Arch: arch, OS: os, DiskPath: "/srv", DiskAvail: avail}
	}
	dns := func(maxTTL time.Duration, servers int, mx ...string) *DNSSection {
		d := &DNSSection{Zone: "example.test.", Consistent: true, MaxTTL: maxTTL, LowTTL: DefaultLowTTL}
		for i := range servers {
			d.Servers = append(d.Servers, DNSServer{Server: fmt.Sprintf("127.0.0.%d:53", i+1), Serial: 1})
		}
		for _, m := range mx {
			d.Records = append(d.Records, DNSRecord{Name: "example.test.", Type: "MX", Value: m})
		}
		dnsTiming(d, now)
		return d
	}
	nginx := &ConfigScan{Kind: "nginx"}
	cases := []struct {
		name string
		p    Plan
		want string
	}{
		{"clean", Plan{Domains: []string{"www"}, Config: &ConfigScan{Kind: "nginx", RealIP: []string{"x"}},
			Hosts: PlanHosts{Old: host("x86_64", "Debian 12", 0), New: host("x86_64", "Debian 12", 1<<30)},
			Move:  &MoveSection{Measured: true, BytesToSend: 1 << 20}, DNS: dns(60*time.Second, 2, "10 a.", "20 b.")}, ""},
		{"proxy address", Plan{Domains: []string{"www"}, OldAddr: "10.9.9.9", Config: nginx, DNS: dns(60*time.Second, 2)}, RiskProxyAddress},
		{"ip rules", Plan{Domains: []string{"www"}, Config: &ConfigScan{Kind: "nginx", ProxyProtocol: []string{"x"}, AccessRules: []string{"f:1: allow 1.2.3.4"}}, DNS: dns(60*time.Second, 2)}, RiskIPRules},
		{"single ns, single mx, long ttl", Plan{Domains: []string{"www"}, DNS: dns(time.Hour, 1, "10 mail.")}, RiskSingleNS + "," + RiskSingleMX + "," + RiskLongTTL},
		{"no dns", Plan{}, RiskNoDNS},
		{"dns error", Plan{Domains: []string{"www"}, DNS: &DNSSection{Error: "no server"}}, RiskNoDNS},
		{"disk", Plan{Domains: []string{"www"}, DNS: dns(0, 2), Hosts: PlanHosts{New: host("", "", 1<<20)},
			Move: &MoveSection{Measured: true, BytesToSend: 1 << 20}}, RiskDisk},
		{"port busy on the target", Plan{Domains: []string{"www"}, DNS: dns(0, 2), Hosts: PlanHosts{New: HostSummary{Listening: []string{"tcp 0.0.0.0:80 apache2"}}}}, RiskPortBusy},
		{"arch and os", Plan{Domains: []string{"www"}, DNS: dns(0, 2),
			Hosts: PlanHosts{Old: host("x86_64", "Debian 11", 0), New: host("aarch64", "Debian 12", 0)}}, RiskArch + "," + RiskOS},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rs := Risks(&c.p)
			if got := riskIDs(rs); got != c.want {
				t.Fatalf("risks %q, want %q: %+v", got, c.want, rs)
			}
			for _, r := range rs {
				if r.Fix == "" || r.Title == "" {
					t.Fatalf("risk without title or fix: %+v", r)
				}
			}
		})
	}
	rs := Risks(&Plan{Domains: []string{"www"}, OldAddr: "10.9.9.9", Config: nginx, DNS: dns(60*time.Second, 2)})
	if !strings.Contains(rs[0].Fix, "set_real_ip_from 10.9.9.9;") || !strings.Contains(rs[0].Fix, "real_ip_header X-Forwarded-For;") {
		t.Fatalf("nginx fix does not say what to change:\n%s", rs[0].Fix)
	}
	d := dns(time.Hour, 2)
	if !d.CutoverAfter.Equal(now.Add(time.Hour)) || !d.EarliestComplete.Equal(now.Add(time.Hour)) {
		t.Fatalf("timing %+v", d)
	}
}

func TestHave(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{"/etc/a": "same", "/etc/b": "different"})
	sum, _ := fileSHA256(filepath.Join(root, "/etc/a"))
	r, err := Have(context.Background(), HaveParams{Root: root, Files: []HaveFile{
		{Path: "/etc/a", Size: 4, SHA256: sum},
		{Path: "/etc/b", Size: 9, SHA256: sum},
		{Path: "/etc/missing", Size: 1, SHA256: sum},
	}})
	if err != nil || r.Files != 1 || r.Bytes != 4 {
		t.Fatalf("have = %+v, %v", r, err)
	}
}

func FuzzNginxStatements(f *testing.F) {
	f.Add("http { allow 1.2.3.4; include 'a b'; log_format x \"$http_x_forwarded_for\"; }")
	f.Add("if ($remote_addr = \"1\") { return 403; } # c")
	f.Add("\"unterminated ; { }")
	root := f.TempDir()
	f.Fuzz(func(t *testing.T, conf string) {
		sc := &scanner{root: root, cs: &ConfigScan{Kind: "nginx"}, seen: map[string]bool{}}
		for _, st := range nginxStatements(strings.NewReader(conf)) {
			if len(st.words) == 0 || st.line < 1 {
				t.Fatalf("empty statement or bad line: %+v", st)
			}
			sc.statement("/etc/nginx/nginx.conf", st, 9) // depth 9: includes are not followed
		}
	})
}

func TestInspectApacheAndPostfix(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"/etc/apache2/apache2.conf": "ServerRoot /etc/apache2\nIncludeOptional sites-enabled/*.conf\nLogFormat \"%h %l %u %t \\\"%r\\\" %>s %O\" common\n",
		"/etc/apache2/sites-enabled/000-default.conf": `<VirtualHost *:80>
	CustomLog ${APACHE_LOG_DIR}/access.log combined
	<Location /admin>
		Require ip 192.0.2.0/24
	</Location>
	<Directory /old>
		Order deny,allow
		Deny from all
		Allow from 198.51.100.0/24
	</Directory>
</VirtualHost>`,
		"/etc/postfix/main.cf": "myhostname = mail.example.test\nmynetworks = 127.0.0.0/8 192.0.2.0/24\nsmtpd_client_restrictions = check_client_access hash:/etc/postfix/access\n",
	})
	a := InspectConfig(InspectParams{Service: "apache2", Root: root})
	if a.Kind != "apache" || len(a.AccessRules) != 2 || len(a.AccessLogs) != 1 || a.AccessLogs[0] != "/var/log/apache2/access.log" || len(a.RealIP) != 0 {
		t.Fatalf("apache: %+v", a)
	}
	if rs := Risks(&Plan{Config: a, Domains: []string{"x"}, DNS: &DNSSection{Consistent: true, Servers: []DNSServer{{Serial: 1}, {Serial: 1}}}}); riskIDs(rs) != RiskProxyAddress+","+RiskIPRules ||
		!strings.Contains(rs[0].Fix, "RemoteIPHeader X-Forwarded-For") {
		t.Fatalf("apache risks: %+v", rs)
	}
	p := InspectConfig(InspectParams{Service: "postfix", Root: root})
	if p.Kind != "postfix" || len(p.AccessRules) != 2 {
		t.Fatalf("postfix: %+v", p)
	}
	if DefaultAccessLog("postfix") != "" || ServiceKind("named") != "bind" || ServiceKind("apache2") != "apache" {
		t.Fatal("service kinds")
	}
}

func TestSuggestCutover(t *testing.T) {
	now := time.Date(2026, 11, 22, 0, 10, 0, 0, time.UTC)
	p := &Plan{Traffic: &HourTraffic{QuietHour: 3, Zone: "+00:00"}}
	if got := suggestCutover(p, now); !got.Equal(time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)) {
		t.Fatalf("no DNS: %s", got)
	}
	p.DNS = &DNSSection{CutoverAfter: now.Add(4 * time.Hour)} // lowered TTLs in effect at 04:10
	if got := suggestCutover(p, now); !got.Equal(time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)) {
		t.Fatalf("after a long TTL: %s", got)
	}
	if got := suggestCutover(&Plan{Traffic: &HourTraffic{QuietHour: -1}}, now); !got.IsZero() {
		t.Fatalf("without traffic: %s", got)
	}
}

func TestSpecAddr(t *testing.T) {
	for spec, want := range map[string]string{"ssh://root@10.0.0.2:22": "10.0.0.2", "root@[fd00::1]:2222": "fd00::1", "root@192.0.2.7": "192.0.2.7", "local": "", "root@web": ""} {
		if got := specAddr(spec); got != want {
			t.Errorf("specAddr(%q) = %q, want %q", spec, got, want)
		}
	}
	if got := resolveSpec(context.Background(), "root@localhost:22"); got != "127.0.0.1" {
		t.Errorf("resolveSpec(localhost) = %q", got)
	}
}
