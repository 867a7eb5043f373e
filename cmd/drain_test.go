package cmd

import (
	"strings"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/internal/traffic"
	"github.com/migrate-tool/migrate/migrate"
)

func TestDrainRendering(t *testing.T) {
	at := time.Date(2026, 11, 22, 1, 12, 5, 0, time.UTC)
	c := &migrate.DrainCheck{Time: at, Following: true, ReqPerMin: 42, PerMinute: []int64{0, 1, 5, 42}, Sparkline: traffic.Sparkline([]int64{0, 1, 5, 42}),
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
