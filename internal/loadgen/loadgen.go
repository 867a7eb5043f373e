// Package loadgen sends a bounded HTTP load, for the cutover tests and the
// demo: a fixed rate spread over workers that reuse connections and
// workers that open a new connection per request, stopped by a request
// budget, a time budget or the caller, whichever comes first. It records
// every failure.
package loadgen

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Options shape a load. Every field has a bound: a load never runs
// longer than MaxDuration nor sends more than MaxRequests.
type Options struct {
	URLs        []string      // requested in turn
	Rate        int           // requests per second in all (default 300)
	KeepAlive   int           // workers reusing connections (default 4)
	NewConn     int           // workers opening a connection per request (default 2)
	MaxRequests int           // default 100000
	MaxDuration time.Duration // default 60s
	Timeout     time.Duration // per request (default 10s)
}

// Result counts what happened.
type Result struct {
	OK       int64           `json:"requests_ok"`
	Failed   int64           `json:"requests_failed"`
	Errors   []string        `json:"errors,omitempty"` // the first few failures
	Duration time.Duration   `json:"duration_ns"`
	P50      time.Duration   `json:"p50_ns"`
	P99      time.Duration   `json:"p99_ns"`
	Max      time.Duration   `json:"max_ns"`
	Statuses map[int]int64   `json:"statuses"`
	lat      []time.Duration // sampled latencies
}

// Load is a running load.
type Load struct {
	opts   Options
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	res    Result
	sent   atomic.Int64
}

// Start begins sending; Stop ends it and returns the result.
func Start(ctx context.Context, o Options) *Load {
	if o.Rate <= 0 {
		o.Rate = 300
	}
	if o.KeepAlive < 0 {
		o.KeepAlive = 0
	} else if o.KeepAlive == 0 {
		o.KeepAlive = 4
	}
	if o.NewConn == 0 {
		o.NewConn = 2
	}
	if o.MaxRequests <= 0 {
		o.MaxRequests = 100000
	}
	if o.MaxDuration <= 0 {
		o.MaxDuration = 60 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, o.MaxDuration)
	l := &Load{opts: o, cancel: cancel, done: make(chan struct{}), res: Result{Statuses: map[int]int64{}}}
	workers := o.KeepAlive + o.NewConn
	interval := time.Duration(float64(time.Second) * float64(workers) / float64(o.Rate))
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		keep := i < o.KeepAlive
		tr := &http.Transport{DisableKeepAlives: !keep, MaxIdleConnsPerHost: 1,
			DialContext: (&net.Dialer{Timeout: o.Timeout}).DialContext}
		client := &http.Client{Transport: tr, Timeout: o.Timeout}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer tr.CloseIdleConnections()
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for n := i; ; n += workers {
				if l.sent.Add(1) > int64(o.MaxRequests) {
					return
				}
				l.one(ctx, client, o.URLs[n%len(o.URLs)])
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		l.mu.Lock()
		l.res.Duration = time.Since(start)
		l.mu.Unlock()
		close(l.done)
	}()
	return l
}

func (l *Load) one(ctx context.Context, c *http.Client, url string) {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	var status int
	if err == nil {
		var resp *http.Response
		resp, err = c.Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			status = resp.StatusCode
			if err == nil && status != http.StatusOK {
				err = fmt.Errorf("%s: %s", url, resp.Status)
			}
		}
	}
	if ctx.Err() != nil && err != nil {
		return // stopped by us, not a failure of the server
	}
	lat := time.Since(start)
	l.mu.Lock()
	defer l.mu.Unlock()
	if status != 0 {
		l.res.Statuses[status]++
	}
	if err != nil {
		l.res.Failed++
		if len(l.res.Errors) < 10 {
			l.res.Errors = append(l.res.Errors, fmt.Sprintf("%s: %v", start.Format("15:04:05.000"), err))
		}
		return
	}
	l.res.OK++
	if len(l.res.lat) < 200000 {
		l.res.lat = append(l.res.lat, lat)
	}
}

// Snapshot returns the counts so far.
func (l *Load) Snapshot() (ok, failed int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.res.OK, l.res.Failed
}

// Stop ends the load and returns its result.
func (l *Load) Stop() Result {
	l.cancel()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.res
	if len(r.lat) > 0 {
		lat := slices.Clone(r.lat)
		slices.Sort(lat)
		r.P50 = lat[len(lat)/2]
		r.P99 = lat[len(lat)*99/100]
		r.Max = lat[len(lat)-1]
	}
	return r
}
