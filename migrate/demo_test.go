package migrate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The demo's log is quietest at 04:00 whenever the demo runs, also with
// its own first requests already in the log (a gap between the synthetic
// week and them would make the current hour look quiet).
func TestWeekOfLogQuietHour(t *testing.T) {
	day := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	for m := 0; m < 24*60; m += 7 {
		now := day.Add(time.Duration(m) * time.Minute)
		log := weekOfLog(now)
		for i := 0; i < 3; i++ { // the demo's health checks, just after
			log = fmt.Appendf(log, "10.0.0.1 - - [%s] \"GET / HTTP/1.1\" 200 5 \"-\" \"curl\"\n",
				now.Add(time.Duration(i)*time.Second).Format("02/Jan/2006:15:04:05 -0700"))
		}
		p := filepath.Join(t.TempDir(), "access.log")
		if err := os.WriteFile(p, log, 0o644); err != nil {
			t.Fatal(err)
		}
		h, err := ReadLogHist(context.Background(), LogHistParams{Path: p, Format: "combined"})
		if err != nil {
			t.Fatal(err)
		}
		if h.QuietHour != 4 {
			t.Fatalf("demo at %s: quiet hour %d, want 4 (per hour %.2f)", now.Format("15:04"), h.QuietHour, h.PerHour)
		}
	}
}
