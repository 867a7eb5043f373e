package testbed

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// DNSOptions describe the authoritative DNS of a bed's zone.
type DNSOptions struct {
	// Zone is the zone name (default "example.test").
	Zone string
	// Records are zone file lines after the SOA and NS records, with
	// names relative to the zone, e.g. "www 60 IN A 10.231.7.1".
	Records []string
	// NoSecondary runs the primary only.
	NoSecondary bool
}

// DNS is a BIND 9 primary and secondary serving one zone on the client
// host (port 53 of its address and of a second address), with NOTIFY and
// IXFR between them and dynamic updates allowed with a TSIG key.
type DNS struct {
	Zone      string
	Primary   string // ADDR:53
	Secondary string // ADDR:53, "" with NoSecondary
	// KeyFile is the TSIG key in BIND's format (name "migrate-key",
	// hmac-sha256); a random secret per bed.
	KeyFile string
	KeyName string
}

// Servers returns the primary and the secondary.
func (d *DNS) Servers() []string {
	if d.Secondary == "" {
		return []string{d.Primary}
	}
	return []string{d.Primary, d.Secondary}
}

const namedOptions = `include "%[1]s/tsig.key";
options { directory "%[2]s"; pid-file "named.pid"; session-keyfile "session.key";
  listen-on port 53 { %[3]s; }; listen-on-v6 { none; }; recursion no; dnssec-validation no;
  %[4]s };
zone "%[5]s" { %[6]s };
`

// StartDNS runs the zone's primary (and secondary) on the client host and
// waits until both answer for the zone's SOA.
func (b *Bed) StartDNS(t TB, o DNSOptions) *DNS {
	t.Helper()
	RequireTools(t, "named")
	if o.Zone == "" {
		o.Zone = "example.test"
	}
	dir := filepath.Join(b.Dir, "dns")
	secret := make([]byte, 32)
	rand.Read(secret)
	d := &DNS{Zone: o.Zone, Primary: net.JoinHostPort(b.Client.Addr, "53"), KeyFile: filepath.Join(dir, "tsig.key"), KeyName: "migrate-key"}
	sec := b.Addr(ClientHost + 1)
	if !o.NoSecondary {
		d.Secondary = net.JoinHostPort(sec, "53")
		if out, err := b.Client.Exec(context.Background(), "ip", "addr", "add", sec+"/24", "dev", "eth0"); err != nil {
			t.Fatalf("testbed: second address on client: %v: %s", err, out)
		}
	}
	for _, sub := range []string{"primary", "secondary"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatalf("testbed: %v", err)
		}
	}
	writeFile(t, d.KeyFile, fmt.Sprintf("key %q { algorithm hmac-sha256; secret %q; };\n", d.KeyName, base64.StdEncoding.EncodeToString(secret)))
	zone := fmt.Sprintf(`$TTL 300
@ IN SOA ns1 hostmaster 1 60 30 600 30
@ IN NS ns1
@ IN NS ns2
ns1 IN A %s
ns2 IN A %s
%s
`, b.Client.Addr, sec, strings.Join(o.Records, "\n"))
	writeFile(t, filepath.Join(dir, "primary", o.Zone+".db"), zone)
	notify := "notify no;"
	if !o.NoSecondary {
		notify = fmt.Sprintf("notify explicit; also-notify { %s; }; notify-source %s; notify-delay 0;", sec, b.Client.Addr)
	}
	writeFile(t, filepath.Join(dir, "primary", "named.conf"), fmt.Sprintf(namedOptions, dir, filepath.Join(dir, "primary"), b.Client.Addr,
		notify+` allow-transfer { key migrate-key; };`, o.Zone,
		fmt.Sprintf(`type primary; file "%s.db"; allow-update { key migrate-key; };`, o.Zone)))
	primary := b.Client.Start(t, "named-primary", "named", "-g", "-c", filepath.Join(dir, "primary", "named.conf"))
	procs := []*Proc{primary}
	if !o.NoSecondary {
		writeFile(t, filepath.Join(dir, "secondary", "named.conf"), fmt.Sprintf(namedOptions, dir, filepath.Join(dir, "secondary"), sec,
			fmt.Sprintf(`notify no; transfer-source %s; allow-transfer { key migrate-key; };`, sec), o.Zone,
			fmt.Sprintf(`type secondary; primaries { %s key migrate-key; }; file "%s.db";`, b.Client.Addr, o.Zone)))
		procs = append(procs, b.Client.Start(t, "named-secondary", "named", "-g", "-c", filepath.Join(dir, "secondary", "named.conf")))
	}
	for i, server := range d.Servers() {
		if err := poll(15*time.Second, procs[i], func() error { return soaAnswer(server, o.Zone) }); err != nil {
			t.Fatalf("testbed: dns %s: %v", server, err)
		}
	}
	return d
}

func soaAnswer(server, zone string) error {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(zone), dns.TypeSOA)
	c := &dns.Client{Timeout: time.Second}
	r, _, err := c.Exchange(m, server)
	if err != nil {
		return err
	}
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 || !r.Authoritative {
		return fmt.Errorf("SOA %s: rcode %s, %d answers", zone, dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	return nil
}

// Lookup asks server for name's records of type qtype and returns their
// data (e.g. the addresses of A records).
func Lookup(server, name string, qtype uint16) ([]string, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, server)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range r.Answer {
		if rr.Header().Rrtype == qtype {
			f := strings.Fields(rr.String())
			out = append(out, strings.Join(f[4:], " "))
		}
	}
	return out, nil
}
