package traffic

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func sec(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }

func TestRateAndPerMinute(t *testing.T) {
	w := NewWindow(t0, time.Hour)
	for i := 0; i < 180; i++ { // one request per second for 3 minutes
		w.Add(sec(i), fmt.Sprintf("192.0.2.%d", i%3))
	}
	now := sec(179)
	if got := w.Rate(now); got != 60 {
		t.Errorf("Rate = %d, want 60", got)
	}
	got := w.PerMinute(sec(239), 5)
	want := []int64{0, 60, 60, 60, 0}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("PerMinute = %v, want %v", got, want)
	}
	cs := w.Clients(now, 10*time.Minute)
	if len(cs) != 3 || cs[0].Requests != 60 || cs[0].Client != "192.0.2.0" {
		t.Errorf("Clients = %v", cs)
	}
	if top := Top(cs, 2); len(top) != 2 {
		t.Errorf("Top = %v", top)
	}
}

func TestQuiet(t *testing.T) {
	tests := []struct {
		name      string
		reqs      []int // seconds after t0 with one request each
		now       int
		threshold int64
		d         time.Duration
		wantQuiet time.Duration
		want      bool
	}{
		{"nothing watched yet", nil, 30, 0, time.Minute, 30 * time.Second, false},
		{"silent for 10m", nil, 600, 0, 10 * time.Minute, 10 * time.Minute, true},
		{"request 2m ago", []int{480}, 600, 0, 5 * time.Minute, 120 * time.Second, false},
		{"under threshold", []int{100, 200, 300, 400, 500}, 600, 1, 5 * time.Minute, 10 * time.Minute, true},
		{"burst 3 in one minute", []int{400, 401, 402}, 600, 2, 3 * time.Minute, 200 * time.Second, true},
		{"busy now", []int{598, 599, 600}, 600, 2, time.Second, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := NewWindow(t0, time.Hour)
			for _, s := range tt.reqs {
				w.Add(sec(s), "c")
			}
			if got := w.QuietFor(sec(tt.now), tt.threshold); got != tt.wantQuiet {
				t.Errorf("QuietFor = %v, want %v", got, tt.wantQuiet)
			}
			if got := w.Quiet(sec(tt.now), tt.d, tt.threshold); got != tt.want {
				t.Errorf("Quiet = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLateAndSpan(t *testing.T) {
	w := NewWindow(t0, 10*time.Minute)
	w.Add(sec(3600), "a")
	w.Add(sec(10), "b") // older than the span
	if w.Late() != 1 || w.Total() != 2 {
		t.Fatalf("late=%d total=%d", w.Late(), w.Total())
	}
	if got := w.Rate(sec(3600)); got != 1 {
		t.Fatalf("Rate = %d", got)
	}
	// Quiet can never be more than the span allows.
	if q := w.QuietFor(sec(7200), 0); q > 10*time.Minute {
		t.Fatalf("QuietFor = %v beyond the span", q)
	}
}

func TestMaxClients(t *testing.T) {
	w := NewWindow(t0, time.Hour)
	w.SetMaxClients(2)
	for _, c := range []string{"a", "b", "c", "d", "a"} {
		w.Add(sec(1), c)
	}
	cs := w.Clients(sec(1), time.Minute)
	if len(cs) != 3 || cs[0].Client != Other || cs[0].Requests != 2 {
		t.Fatalf("Clients = %v", cs)
	}
}

func TestSparkline(t *testing.T) {
	if got := Sparkline([]int64{0, 1, 50, 100}); got != "▁▂▅█" {
		t.Fatalf("Sparkline = %q", got)
	}
	if got := Sparkline([]int64{0, 0}); got != "▁▁" {
		t.Fatalf("Sparkline zeros = %q", got)
	}
}

// shape is requests per hour of day: busy days, quiet at 04:00.
func shape(hr int) int {
	d := hr - 4
	if d < 0 {
		d = -d
	}
	if d > 12 {
		d = 24 - d
	}
	return 5 + 10*d
}

func TestHoursKnownShape(t *testing.T) {
	h := NewHours(time.UTC)
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	const days = 3
	for day := 0; day < days; day++ {
		for hr := 0; hr < 24; hr++ {
			n := shape(hr)
			for i := 0; i < n; i++ {
				h.Add(start.Add(time.Duration(day*24+hr)*time.Hour + time.Duration(i)*time.Hour/time.Duration(n)))
			}
		}
	}
	h.Add(start.Add(days*24*time.Hour - time.Nanosecond)) // end of the last day
	s := h.Stats()
	if !s.Covered || s.Quietest != 4 {
		t.Fatalf("Quietest = %d covered=%v", s.Quietest, s.Covered)
	}
	for hr := 0; hr < 23; hr++ {
		if got, want := s.PerHour[hr], float64(shape(hr)); got < want-0.01 || got > want+0.01 {
			t.Errorf("PerHour[%d] = %.2f, want %v (averaged over %v days)", hr, got, want, s.Days[hr])
		}
	}
	chart := s.Chart(20)
	lines := strings.Split(strings.TrimSuffix(chart, "\n"), "\n")
	if len(lines) != 24 || !strings.HasSuffix(lines[4], "◀ quietest") || !strings.HasPrefix(lines[16], "16 ████████████████████ ") {
		t.Fatalf("chart:\n%s", chart)
	}
	if sp := s.Sparkline(); len([]rune(sp)) != 24 {
		t.Fatalf("sparkline %q", sp)
	}
}

func TestHoursTiesAndGaps(t *testing.T) {
	h := NewHours(time.UTC)
	day := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	counts := map[int]int{0: 9, 1: 2, 2: 9, 3: 5, 4: 2, 5: 3}
	for hr := 0; hr < 24; hr++ {
		n, ok := counts[hr]
		if !ok {
			n = 20
		}
		for i := 0; i < n; i++ {
			h.Add(day.Add(time.Duration(hr)*time.Hour + time.Duration(i)*time.Minute))
		}
	}
	h.Add(day.Add(24*time.Hour - time.Second))
	// 01 and 04 tie at 2/h; 04's neighbours (5+3) are quieter than 01's (9+9).
	if s := h.Stats(); s.Quietest != 4 {
		t.Fatalf("Quietest = %d, want 4; per hour %v", s.Quietest, s.PerHour)
	}
	// Half a day of log: the other hours are unknown, never "quietest".
	h2 := NewHours(time.UTC)
	for hr := 12; hr < 24; hr++ {
		for i := 0; i < 10+hr; i++ {
			h2.Add(day.Add(time.Duration(hr)*time.Hour + time.Duration(i)*time.Minute))
		}
	}
	s := h2.Stats()
	if s.Covered || s.Quietest != 12 || s.Days[3] != 0 {
		t.Fatalf("partial day: quietest=%d covered=%v days=%v", s.Quietest, s.Covered, s.Days)
	}
	if !strings.Contains(s.Chart(10), "03            no data") {
		t.Fatalf("chart:\n%s", s.Chart(10))
	}
	if NewHours(nil).Stats().Quietest != -1 {
		t.Fatal("empty profile has a quietest hour")
	}
}
