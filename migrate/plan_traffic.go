package migrate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/migrate-tool/migrate/internal/accesslog"
	"github.com/migrate-tool/migrate/internal/agent"
	"github.com/migrate-tool/migrate/internal/hint"
	"github.com/migrate-tool/migrate/internal/traffic"
)

// MethodLogHist is the agent method that reads an access log (and its
// rotated copies) on the host it runs on and returns the traffic by hour
// of day, so that only the 24 counts cross the network.
const MethodLogHist = "plan.loghist"

// LogHistParams are the parameters of MethodLogHist.
type LogHistParams struct {
	Path   string `json:"path"`
	Format string `json:"format,omitempty"` // accesslog format name, "" = detect
	// Rotated also reads Path.1, Path.2.gz, ... (oldest first).
	Rotated bool `json:"rotated,omitempty"`
	// MaxLines bounds the lines read (default 20 million).
	MaxLines int64 `json:"max_lines,omitempty"`
}

// HourTraffic is the traffic of an access log by hour of day, and the
// quietest hour found in it.
type HourTraffic struct {
	Path    string    `json:"path"`
	Files   []string  `json:"files,omitempty"`
	Format  string    `json:"format,omitempty"`
	Lines   int64     `json:"lines"`
	Parsed  int64     `json:"parsed"`
	Skipped int64     `json:"skipped"`
	First   time.Time `json:"first,omitzero"`
	Last    time.Time `json:"last,omitzero"`
	// Zone is the UTC offset of the log's time stamps, e.g. "+09:00".
	Zone string `json:"zone,omitempty"`
	// Hours counts requests per hour of day (in the log's zone), and
	// Covered how many days of log cover each hour of day (fractions at
	// the log's first and last hour).
	Hours   [24]int64   `json:"hours"`
	Covered [24]float64 `json:"covered"`
	// PerHour is Hours divided by Covered: requests in an average hour.
	PerHour [24]float64 `json:"per_hour"`
	// QuietHour is the hour of day with the fewest requests on average
	// (-1 when the log holds no dated request), PeakHour the busiest.
	QuietHour int    `json:"quiet_hour"`
	PeakHour  int    `json:"peak_hour"`
	Note      string `json:"note,omitempty"`
}

func init() {
	agent.Register(MethodLogHist, func(ctx context.Context, c *agent.Call) (any, error) {
		var p LogHistParams
		if err := c.Decode(&p); err != nil {
			return nil, err
		}
		return ReadLogHist(ctx, p)
	})
}

// ReadLogHist reads the log named by p and counts its requests by hour.
func ReadLogHist(ctx context.Context, p LogHistParams) (*HourTraffic, error) {
	if p.MaxLines <= 0 {
		p.MaxLines = 20_000_000
	}
	files := []string{p.Path}
	if p.Rotated {
		files = append(rotatedLogs(p.Path), p.Path)
	}
	parser, err := accesslog.NewParser(p.Format, accesslog.Options{SkipPath: true})
	if err != nil {
		return nil, err
	}
	h := &HourTraffic{Path: p.Path}
	acc := &histAcc{}
	seenAny := false
	for _, f := range files {
		n, err := h.readFile(ctx, f, parser, p.MaxLines, acc)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		seenAny = true
		if n > 0 || f == p.Path {
			h.Files = append(h.Files, f)
		}
	}
	if !seenAny {
		return nil, hint.With(fmt.Errorf("access log %s: %w", p.Path, os.ErrNotExist),
			"name the service's access log with --access-log PATH")
	}
	h.Format = string(parser.Format())
	h.finish(acc.hours)
	return h, nil
}

// histAcc accumulates the hour profile across the files of one log.
type histAcc struct {
	hours *traffic.Hours
	loc   *time.Location
}

// rotatedLogs lists PATH.N and PATH.N.gz oldest first (highest N first).
func rotatedLogs(path string) []string {
	matches, _ := filepath.Glob(path + ".*")
	type rot struct {
		n    int
		path string
	}
	var out []rot
	for _, m := range matches {
		suf := strings.TrimSuffix(strings.TrimPrefix(m, path+"."), ".gz")
		var n int
		if _, err := fmt.Sscanf(suf, "%d", &n); err != nil || fmt.Sprint(n) != suf {
			continue
		}
		out = append(out, rot{n, m})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].n > out[j].n })
	paths := make([]string, len(out))
	for i, r := range out {
		paths[i] = r.path
	}
	return paths
}

func (h *HourTraffic) readFile(ctx context.Context, path string, p *accesslog.Parser, max int64, acc *histAcc) (int64, error) {
	rc, err := accesslog.Open(path)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 256<<10), accesslog.MaxLine)
	var rec accesslog.Record
	var n int64
	for sc.Scan() {
		if h.Lines >= max {
			h.Note = fmt.Sprintf("stopped after %d lines", max)
			break
		}
		if n%65536 == 0 && ctx.Err() != nil {
			return n, ctx.Err()
		}
		n++
		h.Lines++
		if err := p.Parse(sc.Bytes(), &rec); err != nil || rec.Time.IsZero() {
			h.Skipped++
			continue
		}
		h.Parsed++
		if acc.hours == nil {
			// The log's own zone is the server's: "3 in the morning" there.
			acc.loc = rec.Time.Location()
			acc.hours = traffic.NewHours(acc.loc)
		}
		acc.hours.Add(rec.Time)
		h.Hours[rec.Time.In(acc.loc).Hour()]++
		if h.First.IsZero() || rec.Time.Before(h.First) {
			h.First = rec.Time
		}
		if rec.Time.After(h.Last) {
			h.Last = rec.Time
		}
	}
	if err := sc.Err(); err != nil && err != io.EOF {
		return n, fmt.Errorf("read %s: %w", path, err)
	}
	return n, nil
}

// finish computes coverage, the average per hour and the quiet hour.
func (h *HourTraffic) finish(hours *traffic.Hours) {
	h.QuietHour, h.PeakHour = -1, -1
	if h.Parsed == 0 || hours == nil {
		if h.Note == "" {
			h.Note = "no dated request in the log"
		}
		return
	}
	h.Zone = h.First.Format("-07:00")
	st := hours.Stats()
	h.PerHour, h.Covered = st.PerHour, st.Days
	h.QuietHour = st.Quietest
	for i := range 24 {
		if st.Days[i] > 0 && (h.PeakHour < 0 || st.PerHour[i] > st.PerHour[h.PeakHour]) {
			h.PeakHour = i
		}
	}
	if !st.Covered {
		h.Note = fmt.Sprintf("the log covers only %s: hours outside it are unknown", h.Last.Sub(h.First).Round(time.Minute))
	}
}

// NextHour returns the first moment at or after t that lies in the given
// hour of day, in the zone given as "+HH:MM" (UTC if it does not parse).
func NextHour(t time.Time, hour int, zone string) time.Time {
	loc := time.UTC
	if zt, err := time.Parse("-07:00", zone); err == nil {
		_, off := zt.Zone()
		loc = time.FixedZone(zone, off)
	}
	lt := t.In(loc)
	c := time.Date(lt.Year(), lt.Month(), lt.Day(), hour, 0, 0, 0, loc)
	if !c.Add(time.Hour).After(lt) {
		c = c.Add(24 * time.Hour)
	}
	if c.Before(lt) {
		return lt
	}
	return c
}
