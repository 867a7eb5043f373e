package traffic

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Hours builds the hour-of-day profile of a log: requests in each hour of
// the day, averaged over the days the log covers. Not safe for concurrent
// use.
type Hours struct {
	loc         *time.Location
	counts      [24]int64
	first, last time.Time
	total       int64
}

// NewHours returns an empty profile in loc (the server's zone, where "3 in
// the morning" means something; nil is time.Local).
func NewHours(loc *time.Location) *Hours {
	if loc == nil {
		loc = time.Local
	}
	return &Hours{loc: loc}
}

// Add counts one request at t. Zero times are ignored.
func (h *Hours) Add(t time.Time) {
	if t.IsZero() {
		return
	}
	h.counts[t.In(h.loc).Hour()]++
	if h.total == 0 || t.Before(h.first) {
		h.first = t
	}
	if h.total == 0 || t.After(h.last) {
		h.last = t
	}
	h.total++
}

// HourStats is the profile of a log.
type HourStats struct {
	// PerHour is the average number of requests in each hour of the day
	// (0 = 00:00–00:59), per day of log covering that hour.
	PerHour [24]float64 `json:"per_hour"`
	// Days is how many days of log cover each hour (fractions at the
	// log's first and last hour).
	Days     [24]float64 `json:"days"`
	Requests int64       `json:"requests"`
	First    time.Time   `json:"first"`
	Last     time.Time   `json:"last"`
	// Quietest is the hour with the fewest requests per day; ties go to
	// the hour whose neighbours are quieter, then to the earlier hour. -1
	// without data.
	Quietest int `json:"quietest"`
	// Covered says whether every hour of the day appears in the log; a
	// log shorter than a day leaves hours unknown (they are not chosen as
	// the quietest).
	Covered bool `json:"covered"`
}

// Stats computes the profile.
func (h *Hours) Stats() HourStats {
	s := HourStats{Requests: h.total, First: h.first, Last: h.last, Quietest: -1}
	if h.total == 0 {
		return s
	}
	// Coverage: walk the log's time span hour by hour (absolute hours, so
	// DST days count 23 or 25 slots).
	start := h.first.Truncate(time.Hour)
	for t := start; !t.After(h.last); t = t.Add(time.Hour) {
		from, to := t, t.Add(time.Hour)
		if from.Before(h.first) {
			from = h.first
		}
		if to.After(h.last) {
			to = h.last
		}
		frac := to.Sub(from).Hours()
		frac = math.Max(frac, 1.0/60) // a minute at least: a lone line counts
		s.Days[t.In(h.loc).Hour()] += frac
	}
	s.Covered = true
	for hr := 0; hr < 24; hr++ {
		if s.Days[hr] > 0 {
			s.PerHour[hr] = float64(h.counts[hr]) / s.Days[hr]
		} else {
			s.Covered = false
		}
	}
	s.Quietest = quietest(s.PerHour, s.Days)
	return s
}

func quietest(per, days [24]float64) int {
	best := -1
	var bestV, bestN float64
	for hr := 0; hr < 24; hr++ {
		if days[hr] == 0 {
			continue
		}
		v := per[hr]
		n := per[(hr+23)%24] + per[(hr+1)%24]
		if best < 0 || v < bestV-1e-9 || (math.Abs(v-bestV) <= 1e-9 && n < bestN-1e-9) {
			best, bestV, bestN = hr, v, n
		}
	}
	return best
}

// Chart draws the profile as 24 lines "HH ███▍ 12.5/h", marking the
// quietest hour, with bars up to width cells.
func (s HourStats) Chart(width int) string {
	if width < 1 {
		width = 30
	}
	var max float64
	for _, v := range s.PerHour {
		max = math.Max(max, v)
	}
	var b strings.Builder
	for hr := 0; hr < 24; hr++ {
		fmt.Fprintf(&b, "%02d %s", hr, bar(s.PerHour[hr], max, width))
		if s.Days[hr] == 0 {
			b.WriteString(" no data")
		} else {
			fmt.Fprintf(&b, " %.1f/h", s.PerHour[hr])
		}
		if hr == s.Quietest {
			b.WriteString("  ◀ quietest")
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// Sparkline is the profile on one line, hour 0 first.
func (s HourStats) Sparkline() string {
	vals := make([]int64, 24)
	for hr, v := range s.PerHour {
		vals[hr] = int64(math.Ceil(v))
	}
	return Sparkline(vals)
}

var eighths = []rune(" ▏▎▍▌▋▊▉")

// bar draws v/max as a bar of width cells with eighth-cell precision,
// padded to width.
func bar(v, max float64, width int) string {
	n := 0
	if max > 0 {
		n = int(math.Round(v / max * float64(width*8)))
	}
	if v > 0 && n == 0 {
		n = 1
	}
	var b strings.Builder
	b.WriteString(strings.Repeat("█", n/8))
	cells := n / 8
	if n%8 != 0 {
		b.WriteRune(eighths[n%8])
		cells++
	}
	b.WriteString(strings.Repeat(" ", width-cells))
	return b.String()
}
