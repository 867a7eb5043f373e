package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

const dnsTestSecret = "dGVzdC1vbmx5LWtleS1mb3ItbWlncmF0aW9uLXRlc3Q="

func runDNSCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(context.Background(), IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errb}, append([]string{"migrate"}, args...))
	return out.String(), errb.String(), code
}

// soaServer answers example.test SOA (with serial) and www A, authoritatively.
func soaServer(t *testing.T, serial uint32) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		q := r.Question[0]
		switch {
		case q.Qtype == dns.TypeSOA && q.Name == "example.test.":
			rr, _ := dns.NewRR("example.test. 60 IN SOA ns1.example.test. h.example.test. 1 3600 600 86400 60")
			rr.(*dns.SOA).Serial = serial
			m.Answer = append(m.Answer, rr)
		case q.Qtype == dns.TypeNS && q.Name == "example.test.":
			rr, _ := dns.NewRR("example.test. 60 IN NS ns1.example.test.")
			m.Answer = append(m.Answer, rr)
		case q.Qtype == dns.TypeA && q.Name == "www.example.test.":
			rr, _ := dns.NewRR("www.example.test. 60 IN A 192.0.2.10")
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

func TestDNSCheckCommand(t *testing.T) {
	a, b := soaServer(t, 5), soaServer(t, 5)
	out, errOut, code := runDNSCmd(t, "dnscheck", "www", "--zone", "example.test", "--server", a, "--server", b, "--expect", "www=192.0.2.10")
	if code != 0 || !strings.Contains(out, "consistent") || !strings.Contains(out, "192.0.2.10") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	c := soaServer(t, 6)
	out, errOut, code = runDNSCmd(t, "--json", "dnscheck", "www", "--zone", "example.test", "--server", a, "--server", c)
	if code != 1 || !strings.Contains(errOut, "migrate: error: zone example.test: not consistent (serial-mismatch)") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var last map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last["type"] != "summary" || last["ok"] != false || len(lines) != 3 {
		t.Fatalf("json: %v\n%s", err, out)
	}
}

func TestDNSUsageErrors(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"dnscheck", "www"}, "give the authoritative servers with --server or a resolver with --resolver"},
		{[]string{"dnscheck", "www", "--server", "127.0.0.1", "--watch"}, "--watch needs --expect NAME=ADDR"},
		{[]string{"dnscheck", "www", "--server", "127.0.0.1", "--expect", "www"}, `--expect "www": want NAME=ADDR`},
		{[]string{"dns", "lower-ttl", "www"}, "--ttl must be at least 1 (seconds)"},
		{[]string{"dns", "set", "www", "SRV", "x"}, "cannot set SRV records"},
		{[]string{"dns", "set", "www", "A"}, "requires at least 3 arg(s)"},
	}
	for _, tc := range tests {
		_, errOut, code := runDNSCmd(t, tc.args...)
		if code != 2 || !strings.Contains(errOut, "migrate: error: "+tc.wantErr) {
			t.Errorf("%v: exit %d, stderr:\n%s", tc.args, code, errOut)
		}
	}
}

// TestDNSSecretNeverPrinted: with -v, a failing update and a bad key file
// print neither the secret nor the key file's content.
func TestDNSSecretNeverPrinted(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "k.key")
	os.WriteFile(keyFile, []byte(`key "migrate-key" { algorithm hmac-sha256; secret "`+dnsTestSecret+`"; };`), 0o600)
	badFile := filepath.Join(dir, "bad.key")
	os.WriteFile(badFile, []byte(`key "migrate-key" { algorithm hmac-sha256 secret "`+dnsTestSecret+`"; };`), 0o600)
	silent, _ := net.ListenPacket("udp", "127.0.0.1:0")
	defer silent.Close()
	server := silent.LocalAddr().String()
	record := filepath.Join(dir, "rec.json")
	for _, args := range [][]string{
		{"-v", "dns", "set", "www", "A", "198.51.100.7", "--zone", "example.test", "--server", server, "--tsig-key", keyFile, "--timeout", "200ms", "--record", record},
		{"-v", "--json", "dns", "lower-ttl", "www", "--ttl", "60", "--zone", "example.test", "--server", server, "--tsig-key", badFile, "--record", record},
		{"-v", "dns", "snapshot", "example.test", "--server", server, "--tsig-key", keyFile, "--timeout", "200ms", "-o", filepath.Join(dir, "z")},
	} {
		out, errOut, code := runDNSCmd(t, args...)
		if code == 0 || strings.Contains(out+errOut, dnsTestSecret) || !strings.Contains(errOut, "migrate: hint:") {
			t.Errorf("%v: exit %d\n%s\n%s", args, code, out, errOut)
		}
		if strings.Contains(args[2], "set") && (!strings.Contains(errOut, "timed out") || !strings.Contains(errOut, "migrate-key (hmac-sha256)")) {
			t.Errorf("%v: want a timeout naming the server and a debug log naming the key:\n%s", args, errOut)
		}
	}
	if _, err := os.Stat(record); !os.IsNotExist(err) {
		t.Errorf("a failed change left a record: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "z")); !os.IsNotExist(err) {
		t.Errorf("a failed snapshot left a file: %v", err)
	}
}
