//go:build e2e

package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/migrate-tool/migrate/internal/testbed"
	"github.com/migrate-tool/migrate/internal/testenv"
)

// The e2e tests run real BIND 9, Unbound and Knot DNS on loopback with
// ports of their own and a temp dir each, so they can run next to other
// test packages.

const (
	e2eKeyName   = "migrate-key"
	e2eKeySecret = "dGVzdC1vbmx5LWtleS1mb3ItbWlncmF0aW9uLXRlc3Q="
	e2eZone      = "example.test."
	oldAddr      = "192.0.2.10"
	newAddr      = "198.51.100.7"
)

// needTools skips (or fails with MIGRATE_E2E_REQUIRE=1) without the tools.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	testenv.Skip(t, fmt.Sprintf("e2e needs %s", strings.Join(missing, ", ")))
}

// ensureLoopback2 makes 127.0.0.2 usable (BIND binds only to configured addresses).
func ensureLoopback2(t *testing.T) {
	t.Helper()
	// Binding 127.0.0.2 works without the address (lo routes all of
	// 127/8), but named listens only on addresses its interfaces list.
	if out, err := exec.Command("ip", "-o", "addr", "show", "dev", "lo").Output(); err == nil && strings.Contains(string(out), " 127.0.0.2/") {
		return
	}
	out, err := exec.Command("ip", "addr", "add", "127.0.0.2/8", "dev", "lo").CombinedOutput()
	if err != nil && !strings.Contains(string(out), "File exists") {
		t.Fatalf("ip addr add 127.0.0.2/8: %v: %s", err, out)
	}
}

// freePort finds a port free for UDP and TCP on the given addresses.
func freePort(t *testing.T, addrs ...string) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", addrs[0]+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		ok := true
		var closers []func() error
		closers = append(closers, l.Close)
		for _, a := range addrs {
			u, err := net.ListenPacket("udp", fmt.Sprintf("%s:%d", a, port))
			if err != nil {
				ok = false
				break
			}
			closers = append(closers, u.Close)
			if a != addrs[0] {
				l2, err := net.Listen("tcp", fmt.Sprintf("%s:%d", a, port))
				if err != nil {
					ok = false
					break
				}
				closers = append(closers, l2.Close)
			}
		}
		for _, c := range closers {
			c()
		}
		if ok {
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// waitSOA polls server until it answers the zone's SOA authoritatively.
func waitSOA(t *testing.T, server string, recurse bool) uint32 {
	t.Helper()
	c := newClient(300*time.Millisecond, nil, nil)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		r, _, err := c.query(context.Background(), server, e2eZone, dns.TypeSOA, recurse)
		if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 && (r.Authoritative || recurse) {
			return r.Answer[0].(*dns.SOA).Serial
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s does not serve %s", server, e2eZone)
	return 0
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

const zoneText = `$TTL 5
@ IN SOA ns1 hostmaster 1 3600 600 86400 5
@ NS ns1
@ NS ns2
@ MX 10 mail
ns1 A 127.0.0.1
ns2 A 127.0.0.2
www 5 A ` + oldAddr + `
mail A 192.0.2.25
app CNAME www
`

type bed struct {
	dir                string
	primary, secondary string
	resolver           string
	keyFile            string
	key                *Key
	nsPort             int // port of both servers when they share one
}

// startBIND starts a BIND 9 primary on 127.0.0.1 and a secondary on
// 127.0.0.2 (TSIG transfers, NOTIFY, IXFR), and Unbound forwarding the zone
// to both. NOTIFY messages pass through a relay that holds each for
// notifyLag, so the secondary visibly lags the primary after an update.
func startBIND(t *testing.T, notifyLag time.Duration) *bed {
	needTools(t, "named", "unbound", "ip")
	ensureLoopback2(t)
	d := t.TempDir()
	b := &bed{dir: d, keyFile: filepath.Join(d, "tsig.key")}
	// Primary and secondary share one port number, so servers found by NS
	// name (ns1 → 127.0.0.1, ns2 → 127.0.0.2) are reachable with --ns-port.
	p1 := freePort(t, "127.0.0.1", "127.0.0.2")
	p2, p3 := p1, freePort(t, "127.0.0.1")
	b.nsPort = p1
	relay := notifyRelay(t, fmt.Sprintf("127.0.0.2:%d", p2), notifyLag)
	b.primary, b.secondary, b.resolver = fmt.Sprintf("127.0.0.1:%d", p1), fmt.Sprintf("127.0.0.2:%d", p2), fmt.Sprintf("127.0.0.1:%d", p3)
	writeFile(t, b.keyFile, fmt.Sprintf("key %q { algorithm hmac-sha256; secret %q; };\n", e2eKeyName, e2eKeySecret))
	writeFile(t, d+"/primary/named.conf", fmt.Sprintf(`include "%[1]s/tsig.key";
key "other-key" { algorithm hmac-sha256; secret "b3RoZXIta2V5LXRoYXQtbWF5LW5vdC11cGRhdGU="; };
controls { };
options { directory "%[1]s/primary"; pid-file "named.pid"; session-keyfile "session.key";
  listen-on port %[2]d { 127.0.0.1; }; listen-on-v6 { none; }; recursion no; dnssec-validation no;
  notify explicit; also-notify { 127.0.0.1 port %[3]d; }; notify-source 127.0.0.1;
  notify-delay 0; allow-transfer { key migrate-key; }; };
zone "example.test" { type primary; file "example.test.db"; allow-update { key migrate-key; }; };
`, d, p1, relay))
	writeFile(t, d+"/secondary/named.conf", fmt.Sprintf(`include "%[1]s/tsig.key";
controls { };
options { directory "%[1]s/secondary"; pid-file "named.pid"; session-keyfile "session.key";
  listen-on port %[2]d { 127.0.0.2; }; listen-on-v6 { none; }; recursion no; dnssec-validation no;
  notify no; transfer-source 127.0.0.2; allow-transfer { key migrate-key; }; };
zone "example.test" { type secondary; primaries { 127.0.0.1 port %[3]d key migrate-key; }; file "example.test.db"; };
`, d, p2, p1))
	writeFile(t, d+"/primary/example.test.db", zoneText)
	testbed.StartDaemon(t, d, "named-primary", nil, "named", "-g", "-c", d+"/primary/named.conf")
	waitSOA(t, b.primary, false)
	testbed.StartDaemon(t, d, "named-secondary", nil, "named", "-g", "-c", d+"/secondary/named.conf")
	waitSOA(t, b.secondary, false)
	startUnbound(t, b, p3, []string{b.primary, b.secondary})
	var err error
	if b.key, err = LoadKey(b.keyFile); err != nil {
		t.Fatal(err)
	}
	return b
}

// notifyRelay forwards NOTIFY datagrams to target after holding each for
// lag, and the answers back; it returns its port on 127.0.0.1 (an address
// the secondary accepts NOTIFY from, being its primary's).
func notifyRelay(t *testing.T, target string, lag time.Duration) int {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			msg := append([]byte(nil), buf[:n]...)
			go func() {
				time.Sleep(lag)
				c, err := net.Dial("udp", target)
				if err != nil {
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(3 * time.Second))
				if _, err := c.Write(msg); err != nil {
					return
				}
				reply := make([]byte, 4096)
				if n, err := c.Read(reply); err == nil {
					pc.WriteTo(reply[:n], from)
				}
			}()
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

func startUnbound(t *testing.T, b *bed, port int, forward []string) {
	var fw strings.Builder
	for _, f := range forward {
		fw.WriteString("  forward-addr: " + strings.Replace(f, ":", "@", 1) + "\n")
	}
	writeFile(t, b.dir+"/unbound/unbound.conf", fmt.Sprintf(`server:
  interface: 127.0.0.1@%[2]d
  port: %[2]d
  access-control: 127.0.0.0/8 allow
  username: ""
  chroot: ""
  directory: "%[1]s/unbound"
  pidfile: "%[1]s/unbound/unbound.pid"
  use-syslog: no
  module-config: "iterator"
  do-not-query-localhost: no
  local-zone: "test." nodefault
  domain-insecure: "example.test"
  num-threads: 1
forward-zone:
  name: "example.test"
%[3]s`, b.dir, port, fw.String()))
	testbed.StartDaemon(t, b.dir, "unbound", nil, "unbound", "-d", "-c", b.dir+"/unbound/unbound.conf")
	waitSOA(t, b.resolver, true)
}

// zoneState is the primary's zone as AXFR returns it, for "untouched" checks.
func zoneState(t *testing.T, b *bed) string {
	t.Helper()
	s, err := Transfer(context.Background(), b.primary, e2eZone, b.key, 3*time.Second)
	if err != nil {
		t.Fatalf("axfr: %v", err)
	}
	var sb strings.Builder
	s.WriteTo(&sb)
	_, rest, _ := strings.Cut(sb.String(), "\n") // drop the comment with the time
	return rest
}

func errorsAsRcode(err error) (*RcodeError, bool) {
	var re *RcodeError
	ok := errors.As(err, &re)
	return re, ok
}
