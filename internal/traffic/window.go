// Package traffic turns a stream of requests into what a drain watcher and
// a planner need: requests per minute over a sliding window with a
// sparkline, the distinct and busiest clients, whether traffic has stayed
// quiet long enough, and the average traffic by hour of day with the
// quietest hour.
//
// It knows nothing of log formats: callers feed it times and client names.
package traffic

import (
	"sort"
	"time"
)

// Window counts requests per second and clients per minute over a sliding
// span. It is not safe for concurrent use.
type Window struct {
	start    time.Time // watching began; earlier time is unknown
	spanSecs int64
	secs     []int64 // ring of per-second counts
	head     int64   // unix second of the newest bucket
	mins     []minute
	maxCli   int
	total    int64
	late     int64
}

type minute struct {
	at      int64 // unix minute
	clients map[string]int64
}

// Other is the client name under which clients beyond the per-minute limit
// are counted.
const Other = "(other)"

// NewWindow returns a window that starts watching at start and remembers
// span (rounded up to whole minutes, at least one hour is sensible for a
// drain: it must cover the quiet period plus a minute).
func NewWindow(start time.Time, span time.Duration) *Window {
	mins := int64((span + time.Minute - 1) / time.Minute)
	if mins < 2 {
		mins = 2
	}
	w := &Window{
		start: start, spanSecs: mins * 60, secs: make([]int64, mins*60),
		head: start.Unix(), mins: make([]minute, mins), maxCli: 100000,
	}
	return w
}

// SetMaxClients bounds the distinct clients remembered per minute (default
// 100000); more are counted as Other.
func (w *Window) SetMaxClients(n int) { w.maxCli = n }

// Start is when watching began.
func (w *Window) Start() time.Time { return w.start }

// Total is the number of requests added, Late the ones too old for the
// span (not counted in rates).
func (w *Window) Total() int64 { return w.total }
func (w *Window) Late() int64  { return w.late }

// advance moves the newest second to sec, clearing the buckets passed.
func (w *Window) advance(sec int64) {
	if sec <= w.head {
		return
	}
	if sec-w.head >= w.spanSecs {
		clear(w.secs)
	} else {
		for s := w.head + 1; s <= sec; s++ {
			w.secs[s%w.spanSecs] = 0
		}
	}
	w.head = sec
}

// Add counts one request at t from client ("" if unknown). A time ahead of
// the newest one moves the window; one older than the span is only counted
// in Total and Late.
func (w *Window) Add(t time.Time, client string) {
	w.total++
	sec := t.Unix()
	w.advance(sec)
	if sec <= w.head-w.spanSecs {
		w.late++
		return
	}
	w.secs[sec%w.spanSecs]++
	if client == "" {
		return
	}
	m := sec / 60
	b := &w.mins[m%int64(len(w.mins))]
	if b.at != m || b.clients == nil {
		if b.clients == nil {
			b.clients = map[string]int64{}
		} else {
			clear(b.clients)
		}
		b.at = m
	}
	if _, ok := b.clients[client]; !ok && len(b.clients) >= w.maxCli {
		client = Other
	}
	b.clients[client]++
}

// count returns the requests in second sec (0 outside the window).
func (w *Window) count(sec int64) int64 {
	if sec > w.head || sec <= w.head-w.spanSecs {
		return 0
	}
	return w.secs[sec%w.spanSecs]
}

// Rate is the number of requests in the minute up to now.
func (w *Window) Rate(now time.Time) int64 {
	w.advance(now.Unix())
	var n int64
	for s := now.Unix() - 59; s <= now.Unix(); s++ {
		n += w.count(s)
	}
	return n
}

// PerMinute returns the requests in each of the last n minutes up to now,
// oldest first (each entry covers 60 s ending at now-(n-1-i) min).
func (w *Window) PerMinute(now time.Time, n int) []int64 {
	w.advance(now.Unix())
	out := make([]int64, n)
	end := now.Unix()
	for i := n - 1; i >= 0; i-- {
		for s := end - 59; s <= end; s++ {
			out[i] += w.count(s)
		}
		end -= 60
	}
	return out
}

// QuietFor is how long traffic has stayed at or under threshold requests
// in every 60-second window up to now: 0 if the last minute is busy, and
// never more than the time watched so far or the span.
func (w *Window) QuietFor(now time.Time, threshold int64) time.Duration {
	w.advance(now.Unix())
	end := now.Unix()
	var sum int64
	for s := end - 59; s <= end; s++ {
		sum += w.count(s)
	}
	// k counts the quiet windows ending at end, end-1, …; together they
	// cover k-1+60 seconds.
	k := int64(0)
	for k < w.spanSecs-60 && sum <= threshold {
		k++
		sum += w.count(end-k-59) - w.count(end-k+1)
	}
	if k == 0 {
		return 0
	}
	q := min(k-1+60, end-w.start.Unix())
	return time.Duration(max(q, 0)) * time.Second
}

// Quiet reports whether traffic has stayed at or under threshold requests
// per minute for at least d. It is false until d has been watched.
func (w *Window) Quiet(now time.Time, d time.Duration, threshold int64) bool {
	return w.QuietFor(now, threshold) >= d
}

// ClientCount is one client's requests in a period.
type ClientCount struct {
	Client   string `json:"client"`
	Requests int64  `json:"requests"`
}

// Clients returns every client seen in the last d (whole minutes, up to the
// span) up to now, busiest first, ties by name.
func (w *Window) Clients(now time.Time, d time.Duration) []ClientCount {
	last := now.Unix() / 60
	first := (now.Add(-d).Unix() + 59) / 60
	if d <= 0 {
		first = last
	}
	if min := last - int64(len(w.mins)) + 1; first < min {
		first = min
	}
	sum := map[string]int64{}
	for m := first; m <= last; m++ {
		b := &w.mins[m%int64(len(w.mins))]
		if b.at != m {
			continue
		}
		for c, n := range b.clients {
			sum[c] += n
		}
	}
	out := make([]ClientCount, 0, len(sum))
	for c, n := range sum {
		out = append(out, ClientCount{c, n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Requests != out[j].Requests {
			return out[i].Requests > out[j].Requests
		}
		return out[i].Client < out[j].Client
	})
	return out
}

// Top returns the first n of cs.
func Top(cs []ClientCount, n int) []ClientCount {
	if len(cs) > n {
		return cs[:n]
	}
	return cs
}
