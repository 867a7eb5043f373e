package migrate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/migrate-tool/migrate/dnscheck"
	"github.com/migrate-tool/migrate/internal/hint"
	"github.com/migrate-tool/migrate/internal/host"
	"github.com/migrate-tool/migrate/internal/loadgen"
	"github.com/migrate-tool/migrate/internal/testbed"
)

// DemoOptions shape `migrate demo`.
type DemoOptions struct {
	// Rate is the load on the web site, requests per second (default 200).
	Rate int
	// AgentBinary is the static migrate binary deployed to the hosts
	// (default: the running one).
	AgentBinary string
	// Events receives every step's progress; Plan, the plan once made;
	// Drain, each drain check.
	Events func(Event)
	Plan   func(dir string, p *Plan)
	Drain  func(*DrainCheck)
	Logger *slog.Logger
}

// DemoSummary is what the demo did, for its final table.
type DemoSummary struct {
	Old, New       string         `json:"-"`
	RequestsOK     int64          `json:"requests_ok"`
	RequestsFailed int64          `json:"requests_failed"`
	Errors         []string       `json:"errors,omitempty"`
	P50            time.Duration  `json:"p50_ns"`
	P99            time.Duration  `json:"p99_ns"`
	MaxLatency     time.Duration  `json:"max_latency_ns"`
	BytesArchive   int64          `json:"bytes_archive"`
	BytesSent      int64          `json:"bytes_sent"`
	BytesSaved     int64          `json:"bytes_saved"`
	FinalSyncBytes int64          `json:"final_sync_bytes"`
	HoldTime       time.Duration  `json:"hold_ns"`
	QuietHour      int            `json:"quiet_hour"`
	DNSSwitched    bool           `json:"dns_switched"`
	Drained        bool           `json:"drained"`
	Durations      []StepDuration `json:"durations"`
	Total          time.Duration  `json:"total_ns"`
}

// StepDuration is how long one phase of the demo took.
type StepDuration struct {
	Step string        `json:"step"`
	Took time.Duration `json:"took_ns"`
}

// demoFailure carries a failure out of the test bed's Fatalf.
type demoFailure struct{ err error }

// demoTB runs a test bed outside tests: failures panic with demoFailure,
// recovered by Demo; cleanups run when the demo ends.
type demoTB struct {
	log      *slog.Logger
	cleanups []func()
	failed   bool
}

func (d *demoTB) Helper()                         {}
func (d *demoTB) Logf(format string, args ...any) { d.log.Debug(fmt.Sprintf(format, args...)) }
func (d *demoTB) Errorf(format string, args ...any) {
	d.failed = true
	d.log.Error(fmt.Sprintf(format, args...))
}
func (d *demoTB) Fatalf(format string, args ...any) {
	d.failed = true
	panic(demoFailure{fmt.Errorf(format, args...)})
}
func (d *demoTB) Skipf(format string, args ...any) {
	d.failed = true
	panic(demoFailure{hint.With(fmt.Errorf("the demo cannot run here: "+format, args...),
		"run it as root after `bash scripts/install.sh` (Debian 12)")})
}
func (d *demoTB) Skip(args ...any)  { d.Skipf("%s", fmt.Sprint(args...)) }
func (d *demoTB) Cleanup(fn func()) { d.cleanups = append(d.cleanups, fn) }
func (d *demoTB) Failed() bool      { return d.failed }
func (d *demoTB) TempDir() string {
	dir, err := os.MkdirTemp("", "migrate-demo-")
	if err != nil {
		d.Fatalf("temp dir: %v", err)
	}
	d.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func (d *demoTB) close() {
	for i := len(d.cleanups) - 1; i >= 0; i-- {
		d.cleanups[i]()
	}
	d.cleanups = nil
}

// Demo builds a local test bed (hosts old, new and client in network
// namespaces, sshd on old and new, BIND 9 primary and secondary for
// example.test), runs nginx with a small site on old, and moves it to new
// under load: plan, capture, transfer, cutover, drain. Everything is torn
// down at the end, also on failure or Ctrl-C.
func Demo(ctx context.Context, o DemoOptions) (sum *DemoSummary, err error) {
	if o.Rate <= 0 {
		o.Rate = 200
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Events == nil {
		o.Events = func(Event) {}
	}
	if o.AgentBinary == "" {
		if o.AgentBinary, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	tb := &demoTB{log: o.Logger}
	defer tb.close()
	defer func() {
		if p := recover(); p != nil {
			f, ok := p.(demoFailure)
			if !ok {
				panic(p)
			}
			err = f.err
		}
	}()
	d := &demo{o: o, tb: tb, sum: &DemoSummary{QuietHour: -1}, start: time.Now()}
	err = d.run(ctx)
	d.sum.Total = time.Since(d.start)
	return d.sum, err
}

type demo struct {
	o     DemoOptions
	tb    *demoTB
	sum   *DemoSummary
	start time.Time
	bed   *testbed.Bed
	dns   *testbed.DNS
	pages []string
}

// phase runs fn as one timed phase of the demo.
func (d *demo) phase(name string, fn func() error) error {
	start := time.Now()
	d.o.Events(Event{Step: name, State: "running"})
	err := fn()
	took := time.Since(start)
	d.sum.Durations = append(d.sum.Durations, StepDuration{Step: name, Took: took})
	if err != nil {
		d.o.Events(Event{Step: name, State: "failed", Detail: err.Error(), Took: took})
		return err
	}
	d.o.Events(Event{Step: name, State: "done", Took: took})
	return nil
}

func (d *demo) run(ctx context.Context) error {
	if err := d.phase("testbed", func() error { return d.setUp() }); err != nil {
		return err
	}
	opts := host.Options{KnownHostsFile: d.bed.KnownHosts, IdentityFiles: []string{d.bed.ClientKey},
		AgentBinary: d.o.AgentBinary, ConnectTimeout: 10 * time.Second, SSHConfigFile: "none", Logger: d.o.Logger}
	open := func(ctx context.Context, spec string) (host.Host, error) { return host.Open(ctx, spec, opts) }

	var m *Migration
	if err := d.phase("plan", func() error {
		p, err := MakePlan(ctx, PlanOptions{Name: "web", From: d.bed.Old.SSHSpec(), To: d.bed.New.SSHSpec(),
			Service: "nginx", Port: 80, Domains: []string{"www." + d.dns.Zone}, DNSServers: d.dns.Servers(),
			TSIGKeyFile: d.dns.KeyFile, Open: open, Logger: d.o.Logger})
		if err != nil {
			return err
		}
		dir := filepath.Join(d.tb.TempDir(), "web")
		if m, err = Create(dir, p); err != nil {
			return err
		}
		if p.Traffic != nil {
			d.sum.QuietHour = p.Traffic.QuietHour
		}
		if d.o.Plan != nil {
			d.o.Plan(dir, p)
		}
		return nil
	}); err != nil {
		return err
	}
	defer m.Close()
	key, err := dnscheck.LoadKey(d.dns.KeyFile)
	if err != nil {
		return err
	}
	so := Options{OpenHost: open, Key: key, Events: d.o.Events, Logger: d.o.Logger, HoldTimeout: 30 * time.Second}

	var urls []string
	for _, p := range d.pages {
		urls = append(urls, "http://"+d.bed.Old.Addr+"/"+p)
	}
	load := loadgen.Start(ctx, loadgen.Options{URLs: urls, Rate: d.o.Rate, MaxDuration: 10 * time.Minute, MaxRequests: 1_000_000})
	loadStopped := false
	stopLoad := func() {
		if loadStopped {
			return
		}
		loadStopped = true
		r := load.Stop()
		d.sum.RequestsOK, d.sum.RequestsFailed, d.sum.Errors = r.OK, r.Failed, r.Errors
		d.sum.P50, d.sum.P99, d.sum.MaxLatency = r.P50, r.P99, r.Max
	}
	defer stopLoad()

	if err := d.phase("prepare", func() error { return Prepare(ctx, m, so) }); err != nil {
		return err
	}
	var tr TransferResult
	if m.Journal.Done(StepTransfer, &tr) {
		d.sum.BytesArchive, d.sum.BytesSent, d.sum.BytesSaved = tr.Stats.BytesArchive, tr.Stats.BytesSent, tr.Stats.BytesSaved
	}
	if err := d.phase("cutover", func() error {
		res, err := Cutover(ctx, m, so)
		if res != nil {
			d.sum.HoldTime, d.sum.FinalSyncBytes = res.HoldTime, res.FinalSync.Stats.BytesSent
			d.sum.DNSSwitched = res.DNS != nil
		}
		return err
	}); err != nil {
		return err
	}
	// The site is used through the old address for a while after the
	// switch (caches, stale clients); then its users are gone. Drain
	// watches the traffic fall and the DNS settle.
	type drained struct {
		res *DrainResult
		err error
	}
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan drained, 1)
	drainStart := time.Now()
	d.o.Events(Event{Step: "drain", State: "running"})
	go func() {
		res, err := Drain(dctx, m, DrainOptions{Watch: true, Threshold: 30, QuietFor: 5 * time.Second, Interval: time.Second,
			Then: []string{ThenStopProxy}, Open: open, Update: d.o.Drain, Logger: d.o.Logger})
		done <- drained{res, err}
	}()
	if err := sleepCtx(ctx, 4*time.Second); err != nil {
		return err
	}
	stopLoad()
	r := <-done
	took := time.Since(drainStart)
	d.sum.Durations = append(d.sum.Durations, StepDuration{Step: "drain", Took: took})
	if r.err != nil {
		d.o.Events(Event{Step: "drain", State: "failed", Detail: r.err.Error(), Took: took})
		return r.err
	}
	d.o.Events(Event{Step: "drain", State: "done", Took: took})
	d.sum.Drained = r.res.Final.Drained
	return RecordDrain(m, r.res)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// setUp builds the bed, the site on old (with a week of access log to
// plan from) and the zone.
func (d *demo) setUp() error {
	d.bed = testbed.New(d.tb, testbed.Options{PrivateDirs: []string{"/var/www"}})
	d.sum.Old, d.sum.New = d.bed.Old.Addr, d.bed.New.Addr
	old := d.bed.Old
	old.WriteFile(d.tb, "/var/www/html/index.html", []byte("<h1>www.example.test</h1>\n<p>served by the old host</p>\n"), 0o644)
	d.pages = []string{"index.html"}
	for i := 1; i <= 30; i++ {
		name := fmt.Sprintf("news/%02d.html", i)
		body := strings.Repeat(fmt.Sprintf("<p>news item %d</p>\n", i), 40*i)
		old.WriteFile(d.tb, "/var/www/html/"+name, []byte(body), 0o644)
		d.pages = append(d.pages, name)
	}
	old.WriteFile(d.tb, "/var/log/nginx/access.log", weekOfLog(time.Now()), 0o640)
	old.StartNginx(d.tb, testbed.NginxOptions{System: true})
	d.dns = d.bed.StartDNS(d.tb, testbed.DNSOptions{Records: []string{
		"www 5 IN A " + old.Addr, "@ 300 IN MX 10 mail", "mail 300 IN A " + old.Addr}})
	return nil
}

// weekOfLog makes seven days of nginx combined log with a daily shape:
// busiest at 16:00, quietest at 04:00.
func weekOfLog(now time.Time) []byte {
	var b strings.Builder
	now = now.UTC()
	start := now.Add(-7 * 24 * time.Hour).Truncate(time.Hour)
	// Up to now, the current hour in part: a gap between the log's end
	// and the demo's own requests would count as a quiet stretch of the
	// current hour.
	for t := start; t.Before(now); t = t.Add(time.Hour) {
		h := float64(t.Hour())
		// Lowest at 04:00, highest at 16:00.
		n := int(12 + 88*(1-math.Cos((h-4)/24*2*math.Pi))/2)
		span := min(time.Hour, now.Sub(t))
		n = int(math.Round(float64(n) * span.Hours()))
		for i := 0; i < n; i++ {
			ts := t.Add(time.Duration(i) * span / time.Duration(n))
			fmt.Fprintf(&b, "198.51.100.%d - - [%s] \"GET /news/%02d.html HTTP/1.1\" 200 %d \"-\" \"Mozilla/5.0\"\n",
				1+i%200, ts.Format("02/Jan/2006:15:04:05 -0700"), 1+i%30, 800+i)
		}
	}
	return []byte(b.String())
}

// ErrDemoFailedRequests is returned when the demo's load saw failures.
var ErrDemoFailedRequests = errors.New("requests failed during the move")
