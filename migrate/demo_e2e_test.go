//go:build e2e

package migrate_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/internal/testbed"
	"github.com/migrate-tool/migrate/migrate"
)

// TestDemo runs `migrate demo --json`, the README's first command, as a
// user would: the binary, as root, on this machine.
func TestDemo(t *testing.T) {
	testbed.Require(t)
	testbed.RequireTools(t, "nginx", "named")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testbed.Binary(t), "demo", "--json")
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("migrate demo: %v\nstdout: %s\nstderr: %s", err, out, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var sum struct {
		Type string `json:"type"`
		migrate.DemoSummary
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum); err != nil || sum.Type != "summary" {
		t.Fatalf("last line is not the summary record (%v): %s", err, lines[len(lines)-1])
	}
	t.Logf("demo: %d requests ok, %d failed, hold %v, sent %d of %d bytes, total %v",
		sum.RequestsOK, sum.RequestsFailed, sum.HoldTime, sum.BytesSent, sum.BytesArchive, sum.Total)
	if sum.RequestsFailed != 0 || sum.RequestsOK < 500 {
		t.Fatalf("requests: %d ok, %d failed: %v", sum.RequestsOK, sum.RequestsFailed, sum.Errors)
	}
	if !sum.DNSSwitched || !sum.Drained || sum.QuietHour != 4 {
		t.Fatalf("dns switched %v, drained %v, quiet hour %d (want 4)", sum.DNSSwitched, sum.Drained, sum.QuietHour)
	}
	if sum.BytesSent >= sum.BytesArchive/4 {
		t.Fatalf("sent %d of %d bytes: the target's own files were not reused", sum.BytesSent, sum.BytesArchive)
	}
	for _, step := range []string{"plan", "capture", "transfer", "takeover", "final-sync", "release", "dns-switch", "drain"} {
		if !strings.Contains(string(out), `"step":"`+step+`"`) {
			t.Errorf("no progress record for %s", step)
		}
	}
}
