//go:build e2e

package migrate_test

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestCutoverThenDrainTakesAddress: after a cutover, drain retires the
// old host: it stops the proxy, removes the agent and moves the old
// address to the new host, where clients that hard-coded it still get
// the site.
func TestCutoverThenDrainTakesAddress(t *testing.T) {
	w := newWebBed(t)
	d := w.startDNS(t)
	dir := w.plan(t, "web", d)
	if out, errOut, code := w.Migrate(t, "cutover", dir); code != 0 {
		t.Fatalf("cutover: exit %d\n%s\n%s", code, out, errOut)
	}
	out, errOut, code := w.Migrate(t, "drain", dir, "--watch", "--quiet-for", "2s", "--interval", "500ms", "--threshold", "0",
		"--then", "stop-proxy", "--then", "remove-agent", "--then", "take-address")
	if code != 0 {
		t.Fatalf("drain: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("drain:\n%s", out)
	for _, want := range []string{"stop-proxy", "remove-agent", "take-address"} {
		if !strings.Contains(out, want) {
			t.Errorf("the summary does not report %s", want)
		}
	}
	// The old host gave its address up; the new one holds it.
	ctx := context.Background()
	if got, _ := w.Old.Exec(ctx, "ip", "-o", "addr", "show", "to", w.Old.Addr); strings.Contains(string(got), w.Old.Addr) {
		t.Fatalf("old still holds %s: %s", w.Old.Addr, got)
	}
	if got, _ := w.New.Exec(ctx, "ip", "-o", "addr", "show", "to", w.Old.Addr); !strings.Contains(string(got), w.Old.Addr) {
		t.Fatalf("new does not hold %s: %s", w.Old.Addr, got)
	}
	// A client that hard-coded the old address reaches the site on new.
	var last error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		got, err := get("http://" + w.Old.Addr + "/index.html")
		if err == nil && string(got) == string(w.files["index.html"]) {
			last = nil
			break
		}
		last = err
	}
	if last != nil {
		t.Fatalf("the old address does not serve the site after take-address: %v", last)
	}
	// Nothing of migrate is left on the old host.
	if _, err := w.Old.Stat("/var/lib/migrate/agent"); err == nil {
		t.Fatal("the agent is still on the old host")
	}
	if _, err := w.Old.Stat("/var/lib/migrate/cutover/web"); err == nil {
		t.Fatal("the cutover state is still on the old host")
	}
}
