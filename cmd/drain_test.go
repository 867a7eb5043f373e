package cmd

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/internal/traffic"
	"github.com/migrate-tool/migrate/migrate"
)

func TestDrainRendering(t *testing.T) {
	at := time.Date(2026, 11, 22, 1, 12, 5, 0, time.UTC)
	c := &migrate.DrainCheck{Time: at, Following: true, DNSWatched: true, ReqPerMin: 42, PerMinute: []int64{0, 1, 5, 42}, Sparkline: traffic.Sparkline([]int64{0, 1, 5, 42}),
		Clients: 2, Top: []traffic.ClientCount{{Client: "203.0.113.9", Requests: 30}, {Client: "198.51.100.7", Requests: 12}},
		QuietFor: 0, QuietNeed: 10 * time.Minute, DNSPending: []string{"127.0.0.2:15354"},
		CachesExpire: at.Add(150 * time.Second), CachesLeft: 150 * time.Second, Lines: 1734, Rotations: 1}
	line := drainLine(c)
	for _, want := range []string{"01:12:05  req/min 42 ▁▂▂█  clients 2 (203.0.113.9 30, 198.51.100.7 12)", "quiet 0s/10m0s",
		"dns stale: 127.0.0.2:15354", "caches expire in 2m30s"} {
		if !strings.Contains(line, want) {
			t.Errorf("line lacks %q: %s", want, line)
		}
	}
	if strings.Contains(line, "\n") || strings.Contains(line, "DRAINED") {
		t.Errorf("line: %q", line)
	}
	block := drainBlock(c)
	if n := strings.Count(block, "\n"); n != 6 || !strings.Contains(block, "  dns      stale: 127.0.0.2:15354  [no]\n") ||
		!strings.Contains(block, "  log      1734 lines (0 unparsed), 1 rotations, 0 truncations\n") {
		t.Errorf("block (%d lines):\n%s", n, block)
	}
	c.DNSOK, c.DNSPending, c.CachesOK, c.CachesLeft, c.TrafficOK, c.Drained = true, nil, true, 0, true, true
	if line := drainLine(c); !strings.HasSuffix(line, "dns new  caches expired  DRAINED") {
		t.Errorf("drained line: %s", line)
	}
}

// TestDrainCancelled: Ctrl-C (the context ending) stops the watch with exit
// 130, journals nothing and leaves the proxy alone.
func TestDrainCancelled(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "web")
	logPath := filepath.Join(t.TempDir(), "proxy.log")
	os.WriteFile(logPath, nil, 0o644)
	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer sleep.Process.Kill()
	m, err := migrate.Create(dir, &migrate.Plan{Name: "web", From: "local", To: "local", Service: "nginx"})
	if err != nil {
		t.Fatal(err)
	}
	m.Journal.Append(migrate.StepTakeover, migrate.StepDone, migrate.ProxyState{Host: "local", PID: sleep.Process.Pid, AccessLog: logPath}, nil)
	m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(700*time.Millisecond, cancel)
	var out, errOut bytes.Buffer
	code := Run(ctx, IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut},
		[]string{"migrate", "drain", dir, "--watch", "--quiet-for", "1m", "--interval", "100ms", "--then", "stop-proxy"})
	if code != 130 || out.Len() == 0 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
	st, err := migrate.ReadStatus(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Steps {
		if s.Step == migrate.StepDrain {
			t.Fatalf("drain journalled after Ctrl-C: %+v", s)
		}
	}
	if err := sleep.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the proxy was stopped: %v", err)
	}
}
