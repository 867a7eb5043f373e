package capture

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

// The traced start-up runs isolated: what it writes stays in its overlay,
// it has its own PID namespace, lo is up and the live service's address is
// on lo in its own network namespace. The traced shell
// reports each check by reading a file only when the check passed, which
// the trace then shows.
func TestTraceIsolated(t *testing.T) {
	requireTracing(t, "ip")
	probe := fmt.Sprintf("/var/tmp/migrate-trace-probe-%d", time.Now().UnixNano())
	t.Cleanup(func() { os.Remove(probe) })
	script := `echo written > ` + probe + `
tr '\0' ' ' < /proc/1/cmdline | grep -q '^` + traceInitName + ` ' && cat /etc/hostname
ip -o link show lo | grep -q LOWER_UP && cat /etc/services
[ -n "$(ip -o addr show dev lo to 192.0.2.77)" ] && cat /etc/protocols
[ "$(ip -o link show | wc -l)" -eq 1 ] && cat /etc/host.conf
exit 0`
	res, err := traceStart(context.Background(), t.TempDir(), []string{"/bin/sh", "-c", script}, "/", nil, []string{"192.0.2.77", "127.0.0.1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(probe); !os.IsNotExist(err) {
		t.Errorf("a file the traced start-up wrote reached the real file system (stat: %v)", err)
	}
	if !slices.Contains(res.Created, probe) {
		t.Errorf("created %v, want %s", res.Created, probe)
	}
	for f, what := range map[string]string{
		"/etc/hostname":  "a PID namespace of its own, its /proc",
		"/etc/services":  "lo up",
		"/etc/protocols": "the live address on lo",
		"/etc/host.conf": "a network namespace of its own (lo only)",
	} {
		if !slices.Contains(res.Opens, f) {
			t.Errorf("the traced start-up lacked %s (did not read %s); opens %v", what, f, res.Opens)
		}
	}
}

// A capture cancelled during its traced start-up takes the whole trace
// with it: the first process is killed, and with it its PID namespace.
func TestTraceCancelled(t *testing.T) {
	requireTracing(t, "pgrep")
	marker := fmt.Sprintf("%d.%d", os.Getpid(), time.Now().UnixNano()%1000000)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	// Busy, so that the trace never settles: only the cancellation ends it.
	argv := []string{"/bin/sh", "-c", "sleep " + marker + " & while :; do cat /etc/hostname >/dev/null; sleep 0.05; done"}
	traceStart(ctx, t.TempDir(), argv, "/", nil, nil, nil)
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("a cancelled trace took %v to end", took)
	}
	if out, _ := exec.Command("pgrep", "-f", "sleep "+marker).Output(); len(out) > 0 {
		t.Fatalf("processes of the cancelled trace still run: %s", out)
	}
}
