//go:build e2e

package dnscheck

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/internal/testbed"
)

// TestE2EBINDCLI drives the migrate binary: dnscheck, dns lower-ttl/set
// with the key in $MIGRATE_TSIG_KEY, dnscheck --watch, dns restore, and a
// wrong key, against BIND 9 and Unbound.
func TestE2EBINDCLI(t *testing.T) {
	needTools(t, "named", "unbound", "ip")
	bin := testbed.Binary(t)
	b := startBIND(t, 1500*time.Millisecond)
	keyText, err := os.ReadFile(b.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	run := func(env string, args ...string) (string, string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "MIGRATE_TSIG_KEY="+env)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out.String()+errb.String(), e2eKeySecret) {
			t.Fatalf("%v printed the secret", args)
		}
		return out.String(), errb.String(), code
	}
	key := string(keyText)
	zoneFlags := []string{"--zone", "example.test", "--server", b.primary, "--auth", b.primary, "--auth", b.secondary, "--dir", b.dir}
	check := []string{"dnscheck", "www", "--zone", "example.test", "--server", b.primary, "--server", b.secondary, "--resolver", b.resolver}

	out, errOut, code := run(key, check...)
	if code != 0 || !strings.Contains(out, "consistent") || !strings.Contains(out, oldAddr) {
		t.Fatalf("dnscheck: exit %d\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = run(key, append([]string{"dns", "lower-ttl", "www", "--ttl", "3"}, zoneFlags...)...)
	if code != 0 || strings.Count(out, "confirmed on") != 2 || !strings.Contains(out, "change record: "+b.dir) {
		t.Fatalf("lower-ttl: exit %d\n%s\n%s", code, out, errOut)
	}
	record := filepath.Join(b.dir, "set.json")
	out, errOut, code = run(key, append([]string{"dns", "set", "www", "A", newAddr, "--record", record, "--no-confirm"}, zoneFlags...)...)
	if code != 0 || !strings.Contains(out, "-> ") {
		t.Fatalf("set: exit %d\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = run("", append(check, "--expect", "www="+newAddr, "--watch", "--interval", "250ms", "--record", record)...)
	t.Logf("watch:\n%s", out)
	if code != 0 || !strings.Contains(out, b.secondary+"=old") || !strings.Contains(out, "(resolver)=old, cached") ||
		!strings.Contains(out, "no cache can hold the old answer after") {
		t.Fatalf("watch: exit %d\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = run("", append([]string{"--json", "dnscheck", "www", "--expect", "www=" + newAddr}, check[2:]...)...)
	if code != 0 || !strings.Contains(out, `"type":"summary"`) || !strings.Contains(out, `"expected":true`) {
		t.Fatalf("json check: exit %d\n%s\n%s", code, out, errOut)
	}

	bad := filepath.Join(b.dir, "bad.key")
	os.WriteFile(bad, []byte("migrate-key:hmac-sha256:d3JvbmctdGVzdC1rZXktZm9yLW1pZ3JhdGlvbi10ZXN0"), 0o600)
	before := zoneState(t, b)
	out, errOut, code = run(key, append([]string{"dns", "set", "www", "A", "192.0.2.99", "--tsig-key", bad}, zoneFlags...)...)
	if code != 1 || !strings.Contains(errOut, "migrate: error: update example.test at "+b.primary+": BADSIG") || !strings.Contains(errOut, "migrate: hint:") {
		t.Fatalf("bad key: exit %d\n%s\n%s", code, out, errOut)
	}
	if zoneState(t, b) != before {
		t.Fatal("a refused update changed the zone")
	}

	out, errOut, code = run(key, append([]string{"dns", "restore", record}, zoneFlags...)...)
	if code != 0 || !strings.Contains(out, "restore www.example.test.") {
		t.Fatalf("restore: exit %d\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = run("", append(check, "--expect", "www="+oldAddr)...)
	if code != 1 || !strings.Contains(out, b.primary) { // the resolver still caches the new address
		t.Logf("check right after restore: exit %d\n%s", code, out)
	}
	out, errOut, code = run("", "dnscheck", "www", "--zone", "example.test", "--server", b.primary, "--server", b.secondary, "--expect", "www="+oldAddr)
	if code != 0 {
		t.Fatalf("after restore: exit %d\n%s\n%s", code, out, errOut)
	}
}
