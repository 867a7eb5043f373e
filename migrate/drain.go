package migrate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/migrate-tool/migrate/internal/hint"
	"github.com/migrate-tool/migrate/internal/host"
	"github.com/migrate-tool/migrate/internal/tail"
	"github.com/migrate-tool/migrate/internal/traffic"
)

// Drain defaults.
const (
	DefaultDrainThreshold = 1 // requests per minute
	DefaultQuietFor       = 10 * time.Minute
	DefaultDrainInterval  = 5 * time.Second
	sparkMinutes          = 15
	topClients            = 5
)

// ErrNotDrained is returned by a one-off drain check that finds traffic or
// stale DNS still (exit code 3).
var ErrNotDrained = errors.New("not drained yet")

// DrainOptions shape a drain.
type DrainOptions struct {
	Threshold int64         // requests per minute at or under which traffic counts as quiet
	QuietFor  time.Duration // how long traffic must stay quiet
	Interval  time.Duration // between checks
	LogFormat string        // overrides the proxy's log format; "" = as journalled, else detect
	AccessLog string        // overrides the proxy's access log (a path on the old host)
	Resolvers []string      // caching resolvers to watch too
	Watch     bool          // follow until drained; otherwise check once
	// Then are the actions run on the old host once drained ("stop-proxy").
	Then []string

	Open func(ctx context.Context, spec string) (host.Host, error)
	// Update is called after every check.
	Update func(*DrainCheck)
	Logger *slog.Logger
	Now    func() time.Time
}

// DrainCheck is the state after one interval: the three conditions and
// what they are made of.
type DrainCheck struct {
	Time time.Time `json:"time"`
	// Following is true once the proxy's log is being followed.
	Following bool `json:"following"`
	// Traffic through the old host.
	ReqPerMin  int64                 `json:"req_per_min"`
	PerMinute  []int64               `json:"per_minute"` // last minutes, oldest first
	Sparkline  string                `json:"sparkline"`
	Clients    int                   `json:"clients"` // distinct, last minute
	Top        []traffic.ClientCount `json:"top,omitempty"`
	QuietFor   time.Duration         `json:"quiet_for_ns"`
	QuietNeed  time.Duration         `json:"quiet_need_ns"`
	Threshold  int64                 `json:"threshold"`
	TrafficOK  bool                  `json:"traffic_ok"`
	Lines      int64                 `json:"lines"`
	Skipped    int64                 `json:"skipped"`
	Format     string                `json:"format,omitempty"`
	Rotations  int64                 `json:"rotations"`
	Truncation int64                 `json:"truncations"`
	// DNS. DNSWatched is false when the migration switched no name.
	DNSWatched bool     `json:"dns_watched"`
	DNSPending []string `json:"dns_pending,omitempty"`
	DNSError   string   `json:"dns_error,omitempty"`
	DNSOK      bool     `json:"dns_ok"`
	// Caches.
	CachesExpire time.Time     `json:"caches_expire,omitzero"`
	CachesLeft   time.Duration `json:"caches_left_ns"`
	CachesOK     bool          `json:"caches_ok"`

	// Reconnects counts follows restarted after a failure (lines written
	// while none ran are not counted).
	Reconnects int `json:"reconnects,omitempty"`

	Drained bool `json:"drained"`
}

// DrainResult is how a drain ended.
type DrainResult struct {
	Started  time.Time             `json:"started"`
	Ended    time.Time             `json:"ended"`
	Final    DrainCheck            `json:"final"`
	Lines    int64                 `json:"lines"`
	Skipped  int64                 `json:"skipped"`
	Tail     tail.Stats            `json:"tail"`
	Clients  int                   `json:"clients"` // distinct over the whole drain
	Top      []traffic.ClientCount `json:"top,omitempty"`
	Proxy    ProxyState            `json:"proxy"`
	DNS      *DNSSwitch            `json:"dns,omitempty"`
	Then     []ThenResult          `json:"then,omitempty"`
	Watching time.Duration         `json:"watching_ns"`
	// Reconnects counts follows restarted after a failure.
	Reconnects int `json:"reconnects,omitempty"`
}

// ThenResult is the outcome of one --then action.
type ThenResult struct {
	Action string `json:"action"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// quietTracker knows since when traffic has stayed at or under a rate:
// the last request that took the requests within span (ending at it) over
// limit ends the quiet.
// span is a minute, or the quiet period when shorter, and limit the
// threshold scaled to span.
type quietTracker struct {
	start    time.Time
	span     time.Duration
	limit    float64
	recent   []timedCount // batches within span of the newest, oldest first
	inSpan   int64        // requests in recent
	lastBusy time.Time
}

type timedCount struct {
	t time.Time
	n int64
}

func newQuietTracker(start time.Time, threshold int64, quietFor time.Duration) *quietTracker {
	span := min(time.Minute, quietFor)
	return &quietTracker{start: start, span: span, limit: float64(threshold) * span.Seconds() / 60}
}

// add counts n requests at t (times must not go backwards by much). The
// quiet period restarts at a request that brings the span over the limit.
// Memory is one entry per call, not per request.
func (q *quietTracker) add(t time.Time, n int64) {
	if n <= 0 {
		return
	}
	q.recent = append(q.recent, timedCount{t, n})
	q.inSpan += n
	i := 0
	for i < len(q.recent) && !q.recent[i].t.After(t.Add(-q.span)) {
		q.inSpan -= q.recent[i].n
		i++
	}
	q.recent = q.recent[i:]
	if float64(q.inSpan) > q.limit && t.After(q.lastBusy) {
		q.lastBusy = t
	}
}

// restart starts the quiet period again at t (after a gap in following,
// when requests may have been missed).
func (q *quietTracker) restart(t time.Time) {
	if t.After(q.lastBusy) {
		q.lastBusy = t
	}
}

// quietFor is how long traffic has been quiet at now (0 until following
// started).
func (q *quietTracker) quietFor(now time.Time) time.Duration {
	if q.start.IsZero() {
		return 0
	}
	from := q.start
	if q.lastBusy.After(from) {
		from = q.lastBusy
	}
	return max(now.Sub(from), 0)
}

// judge combines the three conditions at now.
func judge(now time.Time, w *traffic.Window, q *quietTracker, o DrainOptions, dnsOK bool, caches time.Time) DrainCheck {
	c := DrainCheck{Time: now, Following: !q.start.IsZero(), Threshold: o.Threshold, QuietNeed: o.QuietFor, DNSOK: dnsOK, CachesExpire: caches}
	c.ReqPerMin = w.Rate(now)
	c.PerMinute = w.PerMinute(now, sparkMinutes)
	c.Sparkline = traffic.Sparkline(c.PerMinute)
	cl := w.Clients(now, time.Minute)
	c.Clients = len(cl)
	c.Top = slices.Clone(traffic.Top(cl, topClients))
	c.QuietFor = q.quietFor(now)
	c.TrafficOK = c.QuietFor >= o.QuietFor
	if !caches.IsZero() && caches.After(now) {
		c.CachesLeft = caches.Sub(now)
	}
	c.CachesOK = c.CachesLeft == 0
	c.Drained = c.Following && c.TrafficOK && c.DNSOK && c.CachesOK
	return c
}

func (o *DrainOptions) defaults() {
	if o.Threshold < 0 {
		o.Threshold = 0
	}
	if o.QuietFor <= 0 {
		o.QuietFor = DefaultQuietFor
	}
	if o.Interval <= 0 {
		o.Interval = DefaultDrainInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Update == nil {
		o.Update = func(*DrainCheck) {}
	}
}

// DrainInputs reads what a drain needs from the journal: the proxy the
// takeover left and the DNS switch (nil when the migration switches no
// DNS).
func DrainInputs(m *Migration) (ProxyState, *DNSSwitch, error) {
	var ps ProxyState
	var took TakeoverResult
	if !m.Journal.Done(StepTakeover, &took) {
		return ps, nil, hint.With(fmt.Errorf("%s: no proxy holds the old address yet", m.Dir),
			"run `migrate cutover "+m.Dir+"` first")
	}
	// The cutover journals a TakeoverResult; a bare ProxyState is read too.
	if ps = took.Proxy; ps.AccessLog == "" && ps.PID == 0 {
		m.Journal.Done(StepTakeover, &ps)
	}
	if ps.Host == "" {
		ps.Host = m.Plan.From
	}

	var sw DNSSwitch
	if m.Journal.Done(StepDNS, &sw) {
		if sw.CachesExpire.IsZero() {
			for _, c := range sw.Changes {
				if c != nil && c.CachesExpire.After(sw.CachesExpire) {
					sw.CachesExpire = c.CachesExpire
				}
			}
		}
		if len(sw.Servers) == 0 {
			sw.Servers = m.Plan.DNSServers
		}
		if len(sw.Servers) == 0 {
			// The servers the update was confirmed on.
			for _, c := range sw.Changes {
				for _, s := range c.Servers {
					if s.Server != "" && !slices.Contains(sw.Servers, s.Server) {
						sw.Servers = append(sw.Servers, s.Server)
					}
				}
			}
		}
		return ps, &sw, nil
	}
	if len(m.Plan.Domains) > 0 {
		return ps, nil, hint.With(fmt.Errorf("%s: the DNS has not been switched yet", m.Dir),
			"finish `migrate cutover "+m.Dir+"`: drain waits for the names to point at the new host")
	}
	return ps, nil, nil
}
