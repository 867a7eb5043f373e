package migrate

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// fakeSMTP accepts RCPT TO for addresses of domain and refuses the rest,
// and fails the test if a client ever sends DATA.
func fakeSMTP(t *testing.T, domain string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				w := bufio.NewWriter(c)
				r := bufio.NewReader(c)
				say := func(s string) { w.WriteString(s + "\r\n"); w.Flush() }
				say("220 fake ESMTP")
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					cmd := strings.ToUpper(strings.TrimSpace(line))
					switch {
					case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
						say("250 fake")
					case strings.HasPrefix(cmd, "MAIL FROM:"):
						say("250 ok")
					case strings.HasPrefix(cmd, "RCPT TO:"):
						if strings.HasSuffix(strings.TrimSuffix(cmd, ">"), "@"+strings.ToUpper(domain)) {
							say("250 ok")
						} else {
							say("554 5.7.1 Relay access denied")
						}
					case cmd == "RSET":
						say("250 ok")
					case cmd == "QUIT":
						say("221 bye")
						return
					case cmd == "DATA":
						t.Error("the probe sent DATA")
						say("554 no")
					default:
						say("502 unknown")
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestProbeRcpt(t *testing.T) {
	addr := fakeSMTP(t, "example.test")
	ctx := context.Background()
	if res, reply := ProbeRcpt(ctx, addr, "postmaster@example.test", 2*time.Second); res != "accepts" {
		t.Fatalf("own domain: %s %s", res, reply)
	}
	if res, reply := ProbeRcpt(ctx, addr, "postmaster@other.test", 2*time.Second); res != "refuses" || !strings.Contains(reply, "554 5.7.1 Relay access denied") {
		t.Fatalf("other domain: %s %s", res, reply)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	if res, _ := ProbeRcpt(ctx, closed, "postmaster@example.test", time.Second); res != "unreachable" {
		t.Fatalf("closed port: %s", res)
	}
}

func TestBackupMXRisk(t *testing.T) {
	d := &DNSSection{Zone: "example.test.", Consistent: true, Servers: []DNSServer{{Server: "a", Serial: 1}, {Server: "b", Serial: 1}},
		Records: []DNSRecord{{Type: "MX", Value: "10 mail.example.test."}, {Type: "MX", Value: "20 mx2.example.test."}},
		MXProbes: []MXProbe{{Host: "mail.example.test.", Pref: 10, Result: "refuses"},
			{Host: "mx2.example.test.", Pref: 20, Backup: true, Rcpt: "postmaster@example.test", Result: "refuses", Reply: "554 5.7.1 Relay access denied"}}}
	rs := Risks(&Plan{Domains: []string{"example.test"}, DNS: d})
	if got := riskIDs(rs); got != RiskBackupMX || rs[0].Severity != "high" || !strings.Contains(rs[0].Detail, "Relay access denied") {
		t.Fatalf("risks %+v", rs)
	}
	d.MXProbes[1].Result = "accepts"
	if rs := Risks(&Plan{Domains: []string{"example.test"}, DNS: d}); len(rs) != 0 {
		t.Fatalf("accepting backup: %+v", rs)
	}
}
