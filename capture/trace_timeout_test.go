package capture

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/internal/testenv"
)

// A start-up that never settles is ended at traceTimeout, and the result
// says what was still running.
func TestTraceUnsettled(t *testing.T) {
	requireTracing(t)
	defer func(d time.Duration) { traceTimeout = d }(traceTimeout)
	traceTimeout = 2 * time.Second
	argv := []string{"/bin/sh", "-c", "while :; do cat /etc/hostname >/dev/null; sleep 0.05; done"}
	res, err := traceStart(context.Background(), t.TempDir(), argv, "/", nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Unsettled == "" || !strings.Contains(res.Unsettled, "pid ") {
		t.Fatalf("Unsettled = %q, want what was still running", res.Unsettled)
	}
	t.Logf("unsettled: %s", res.Unsettled)

	// One that settles says nothing.
	res, err = traceStart(context.Background(), t.TempDir(), []string{"/bin/sh", "-c", "cat /etc/hostname >/dev/null; sleep 30"}, "/", nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Unsettled != "" {
		t.Fatalf("a settled start-up reported %q", res.Unsettled)
	}
}

// A start-up whose tracer cannot run (here: the chroot's shell is given a
// command that does not exist) ends at once with an error or a trace of
// the failed exec, never a hang.
func TestTraceMissingCommand(t *testing.T) {
	requireTracing(t)
	start := time.Now()
	res, err := traceStart(context.Background(), t.TempDir(), []string{"/nonexistent/daemon"}, "/", nil, nil, nil)
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("took %v", took)
	}
	t.Logf("res %+v err %v", res, err)
	if err == nil && res.Unsettled != "" {
		t.Fatalf("a command that does not exist left an unsettled trace: %q", res.Unsettled)
	}
}

// requireTracing skips (fails, with MIGRATE_E2E_REQUIRE=1) a test that
// traces a start-up: it needs root, strace and the tools named.
func requireTracing(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Skip(t, "tracing needs root")
	}
	for _, tool := range append([]string{"strace"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Skip(t, tool+" not installed")
		}
	}
}
