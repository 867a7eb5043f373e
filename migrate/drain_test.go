package migrate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/dnscheck"
	"github.com/migrate-tool/migrate/internal/hint"
	"github.com/migrate-tool/migrate/internal/host"
	"github.com/migrate-tool/migrate/internal/traffic"
)

// TestJudge drives the drain conditions with a fake clock.
func TestJudge(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	o := DrainOptions{Threshold: 2, QuietFor: 3 * time.Minute}
	w := traffic.NewWindow(t0, 10*time.Minute)
	q := newQuietTracker(t0, o.Threshold, o.QuietFor)
	add := func(t time.Time, client string) { w.Add(t, client); q.add(t, 1) }
	caches := at(150)
	// Busy first minute: 30 requests from two clients.
	for i := range 30 {
		add(at(i*2), fmt.Sprintf("10.0.0.%d", 1+i%2))
	}
	c := judge(at(59), w, q, o, true, caches)
	if c.ReqPerMin != 30 || c.Clients != 2 || c.TrafficOK || c.CachesOK || c.Drained || c.CachesLeft != 91*time.Second {
		t.Fatalf("busy: %+v", c)
	}
	if len(c.Top) != 2 || c.Top[0].Requests != 15 {
		t.Fatalf("top %+v", c.Top)
	}
	// Then a trickle of one request a minute: under the threshold.
	for m := 2; m < 6; m++ {
		add(at(m*60+5), "10.0.0.9")
	}
	c = judge(at(3*60+30), w, q, o, true, caches)
	if c.TrafficOK || c.Drained || !c.CachesOK {
		t.Fatalf("quiet for only %s: %+v", c.QuietFor, c)
	}
	c = judge(at(58+180), w, q, o, false, caches)
	if !c.TrafficOK || c.DNSOK || c.Drained {
		t.Fatalf("traffic quiet, DNS stale: %+v", c)
	}
	c = judge(at(58+180), w, q, o, true, caches)
	if !c.Drained {
		t.Fatalf("all three hold: %+v", c)
	}
	// A burst resets the quiet period.
	for range 5 {
		add(at(400), "203.0.113.5")
	}
	if c = judge(at(401), w, q, o, true, caches); c.TrafficOK || c.Drained || c.QuietFor != time.Second {
		t.Fatalf("after a burst: %+v", c)
	}
	if !strings.ContainsRune(c.Sparkline, '█') || len(c.PerMinute) != sparkMinutes {
		t.Fatalf("sparkline %q", c.Sparkline)
	}
}

func TestCachesExpire(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)
	if !cachesExpire(nil).IsZero() {
		t.Fatal("no switch: caches expire")
	}
	sw := &DNSSwitch{SwitchedAt: t0, CachesExpire: t0.Add(time.Minute)}
	if got := cachesExpire(sw); !got.Equal(t0.Add(time.Minute)) {
		t.Fatalf("got %s", got)
	}
}

// appendLines appends n nginx lines from client to path, one write each.
func appendLines(t *testing.T, path string, from, n int, client string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := from; i < from+n; i++ {
		line := fmt.Sprintf("%s - - [%s] \"GET /n%d HTTP/1.1\" 200 12 \"-\" \"t\"\n", client, time.Now().Format("02/Jan/2006:15:04:05 -0700"), i)
		if _, err := f.WriteString(line); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFollowRotation follows a log through rotation by rename and by
// copytruncate and counts every line.
func TestFollowRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	appendLines(t, path, 0, 10, "10.0.0.1") // before the follow: not counted
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var batches []FollowBatch
	var res *FollowResult
	var ferr error
	done := make(chan struct{})
	pr, pw := ioPipe()
	go func() {
		defer close(done)
		res, ferr = Follow(ctx, FollowParams{Path: path, Flush: 20 * time.Millisecond}, pw)
		pw.Close()
	}()
	go readBatches(pr, &mu, &batches)
	waitCount := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			var n int64
			for _, b := range batches {
				n += b.Lines
			}
			mu.Unlock()
			if n >= want {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("lines never reached %d", want)
	}
	// The first batch says the file is being followed (from its end).
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(batches)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no first batch")
		}
		time.Sleep(5 * time.Millisecond)
	}
	appendLines(t, path, 10, 100, "10.0.0.2")
	waitCount(100)
	// rename + create, with lines written to the old file just before
	appendLines(t, path, 110, 50, "10.0.0.3")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendLines(t, path+".1", 160, 20, "10.0.0.3")
	appendLines(t, path, 180, 30, "10.0.0.4")
	waitCount(200)
	// copytruncate: copy, write some lines just before the truncate
	b, _ := os.ReadFile(path)
	appendLines(t, path, 210, 5, "10.0.0.5")
	b2, _ := os.ReadFile(path)
	_ = b
	if err := os.WriteFile(path+".1", b2, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendLines(t, path, 215, 40, "10.0.0.6")
	waitCount(245)
	cancel()
	<-done
	if ferr != nil {
		t.Fatal(ferr)
	}
	if res.Lines != 245 || res.Tail.Rotations != 1 || res.Tail.Truncations < 1 {
		t.Fatalf("result %+v, want 245 lines, 1 rotation, a truncation", res)
	}
	mu.Lock()
	defer mu.Unlock()
	var n int64
	clients := map[string]int64{}
	for _, b := range batches {
		n += b.Lines
		for c, k := range b.Clients {
			clients[c] += k
		}
	}
	if n != 245 || clients["10.0.0.3"] != 70 || clients["10.0.0.1"] != 0 {
		t.Fatalf("batches count %d, clients %v", n, clients)
	}
}

// newLocalMigration makes a migration directory whose journal has a
// takeover with the proxy log at logPath on host "local".
func newLocalMigration(t *testing.T, logPath string, sw *DNSSwitch) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "web")
	m, err := Create(dir, &Plan{Version: PlanVersion, Name: "web", From: "local", To: "local", Service: "nginx"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Journal.Append(StepTakeover, StepDone, ProxyState{Host: "local", PID: 0, AccessLog: logPath, LogFormat: "combined"}, nil); err != nil {
		t.Fatal(err)
	}
	if sw != nil {
		if err := m.Journal.Append(StepDNS, StepDone, sw, nil); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func openLocal(ctx context.Context, spec string) (host.Host, error) {
	return host.Open(ctx, spec, host.Options{})
}

// TestDrainWatchLocal: drain does not end while lines arrive, ends once
// they stop for the quiet period, and counts every line.
func TestDrainWatchLocal(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "proxy.log")
	appendLines(t, logPath, 0, 1, "10.0.0.1")
	dir := newLocalMigration(t, logPath, nil)
	m, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var mu sync.Mutex
	var checks []DrainCheck
	stopWriting := make(chan struct{})
	written := make(chan int, 1)
	following := make(chan struct{})
	var once sync.Once
	lastWrite := make(chan time.Time, 1)
	go func() {
		n := 0
		var last time.Time
		defer func() { written <- n; lastWrite <- last }()
		<-following // lines written before are not counted (followed from the end)
		go func() {
			time.Sleep(1500 * time.Millisecond)
			close(stopWriting)
		}()
		for {
			select {
			case <-stopWriting:
				return
			case <-time.After(20 * time.Millisecond):
				appendLines(t, logPath, n, 3, "10.0.0.7")
				last = time.Now()
				n += 3
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	res, err := Drain(ctx, m, DrainOptions{Threshold: 0, QuietFor: 2 * time.Second, Interval: 100 * time.Millisecond, Watch: true,
		Open: openLocal, Update: func(c *DrainCheck) {
			mu.Lock()
			checks = append(checks, *c)
			mu.Unlock()
			if c.Following {
				once.Do(func() { close(following) })
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	n := <-written
	stopped := <-lastWrite // the quiet period runs from the last line written
	if time.Since(start) < 3*time.Second || res.Ended.Sub(stopped) < 2*time.Second {
		t.Fatalf("drained too early: %s after start, %s after the last write", time.Since(start), res.Ended.Sub(stopped))
	}
	if res.Lines != int64(n) || !res.Final.Drained || res.Clients != 1 || res.Top[0].Client != "10.0.0.7" {
		t.Fatalf("result lines %d (wrote %d) %+v", res.Lines, n, res)
	}
	mu.Lock()
	defer mu.Unlock()
	busy := false
	for _, c := range checks[:len(checks)-1] {
		if c.Drained {
			t.Fatalf("a check before the last says drained: %+v", c)
		}
		busy = busy || c.ReqPerMin > 0
	}
	if !busy {
		t.Fatal("no check saw traffic")
	}
}

func TestDrainOnceLocal(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "proxy.log")
	appendLines(t, logPath, 0, 5, "10.0.0.1")
	sw := &DNSSwitch{CachesExpire: time.Now().Add(-time.Minute)}
	m, err := Open(newLocalMigration(t, logPath, sw))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	res, err := Drain(ctx, m, DrainOptions{Threshold: 0, QuietFor: time.Minute, Open: openLocal})
	if err == nil || res == nil || res.Final.TrafficOK || res.Final.ReqPerMin != 5 {
		t.Fatalf("recent traffic: err %v res %+v", err, res)
	}
	res, err = Drain(ctx, m, DrainOptions{Threshold: 10, QuietFor: time.Minute, Open: openLocal})
	if err != nil || !res.Final.Drained {
		t.Fatalf("under the threshold: err %v res %+v", err, res)
	}
	// --access-log: another, silent, log instead of the proxy's.
	other := filepath.Join(t.TempDir(), "pound.log")
	os.WriteFile(other, nil, 0o644)
	res, err = Drain(ctx, m, DrainOptions{Threshold: 0, QuietFor: time.Minute, Open: openLocal, AccessLog: other})
	if err != nil || !res.Final.Drained || res.Proxy.AccessLog != other {
		t.Fatalf("other log: err %v res %+v", err, res)
	}
}

func TestDrainInputs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "x")
	m, err := Create(dir, &Plan{Name: "x", From: "local", Domains: []string{"www.example.test"}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, _, err := DrainInputs(m); err == nil || !strings.Contains(err.Error(), "no proxy holds the old address") {
		t.Fatalf("no takeover: %v", err)
	}
	m.Journal.Append(StepTakeover, StepDone, ProxyState{AccessLog: "/x"}, nil)
	if _, _, err := DrainInputs(m); err == nil || !strings.Contains(err.Error(), "not been switched") {
		t.Fatalf("no DNS switch: %v", err)
	}
	m.Journal.Append(StepDNS, StepDone, DNSSwitch{Names: []string{"www.example.test"}, Changes: []*dnscheck.Change{
		{Servers: []dnscheck.Confirmation{{Server: "127.0.0.1:53"}, {Server: "127.0.0.2:53"}}}, {Servers: []dnscheck.Confirmation{{Server: "127.0.0.2:53"}}}}}, nil)
	ps, sw, err := DrainInputs(m)
	if err != nil || ps.Host != "local" || ps.AccessLog != "/x" || sw == nil || strings.Join(sw.Servers, " ") != "127.0.0.1:53 127.0.0.2:53" {
		t.Fatalf("inputs %+v %+v %v", ps, sw, err)
	}
	// The cutover journals a TakeoverResult around the ProxyState.
	m.Journal.Append(StepTakeover, StepDone, TakeoverResult{Proxy: ProxyState{PID: 42, AccessLog: "/var/lib/migrate/cutover/web/access.log", ControlSocket: "/c"}}, nil)
	if ps, _, err = DrainInputs(m); err != nil || ps.PID != 42 || ps.AccessLog != "/var/lib/migrate/cutover/web/access.log" || ps.Host != "local" {
		t.Fatalf("from a TakeoverResult: %+v %v", ps, err)
	}
}

// countingWriter decodes FollowBatch lines and cancels once n lines came.
type countingWriter struct {
	buf    []byte
	got, n int64
	cancel func()
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		var b FollowBatch
		if err := json.Unmarshal(w.buf[:i], &b); err != nil {
			return 0, err
		}
		w.buf = w.buf[i+1:]
		if w.got += b.Lines; w.got >= w.n {
			w.cancel()
		}
	}
}

// BenchmarkFollow measures the agent side of drain: tail, parse and count
// per client, for a file of nginx combined lines read from its start.
func BenchmarkFollow(b *testing.B) {
	const n = 500_000
	path := filepath.Join(b.TempDir(), "access.log")
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, "198.51.100.%d - - [22/Nov/2026:01:02:03 +0000] \"GET /item/%d HTTP/1.1\" 200 %d \"https://example.test/\" \"Mozilla/5.0 (X11; Linux x86_64)\"\n", i%200, i, 1000+i%5000)
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(sb.Len()))
	b.ResetTimer()
	for range b.N {
		ctx, cancel := context.WithCancel(context.Background())
		w := &countingWriter{n: n, cancel: cancel}
		r, err := Follow(ctx, FollowParams{Path: path, FromStart: true}, w)
		if err != nil || r.Lines != n || w.got != n {
			b.Fatalf("lines %d, batches %d: %v", r.Lines, w.got, err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkAddBatch measures the watcher side: folding a batch of 10000
// requests from 200 clients into the window and the quiet tracker.
func BenchmarkAddBatch(b *testing.B) {
	now := time.Now()
	w := traffic.NewWindow(now, 20*time.Minute)
	q := newQuietTracker(now, 1, 10*time.Minute)
	all := map[string]int64{}
	batch := FollowBatch{Lines: 10000, Clients: map[string]int64{}}
	for i := range 200 {
		batch.Clients[fmt.Sprintf("198.51.100.%d", i)] = 50
	}
	b.ResetTimer()
	for i := range b.N {
		addBatch(w, q, all, now.Add(time.Duration(i)*time.Millisecond), &batch)
	}
	b.ReportMetric(float64(10000*b.N)/b.Elapsed().Seconds(), "requests/s")
}

// flakyHost is host "local" whose follows drop after a moment, as an SSH
// connection can, while failures remain.
type flakyHost struct {
	host.Host
	failures *atomic.Int32
}

func (f flakyHost) CallStream(ctx context.Context, method string, params any, in io.Reader, out io.Writer, result any) error {
	if method == MethodFollow && f.failures.Add(-1) >= 0 {
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		f.Host.CallStream(cctx, method, params, in, out, result)
		return errors.New("ssh: connection lost")
	}
	return f.Host.CallStream(ctx, method, params, in, out, result)
}

func TestDrainReconnects(t *testing.T) {
	defer func(d time.Duration) { reconnectBase = d }(reconnectBase)
	reconnectBase = 10 * time.Millisecond
	logPath := filepath.Join(t.TempDir(), "proxy.log")
	appendLines(t, logPath, 0, 1, "10.0.0.1")
	m, err := Open(newLocalMigration(t, logPath, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var failures atomic.Int32
	opens := 0
	open := func(ctx context.Context, spec string) (host.Host, error) {
		opens++
		h, err := openLocal(ctx, spec)
		return flakyHost{h, &failures}, err
	}
	// Two drops: drain reconnects and still ends, counting what it saw.
	failures.Store(2)
	stop := make(chan struct{})
	wrote := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				wrote <- n
				return
			case <-time.After(20 * time.Millisecond):
				appendLines(t, logPath, n, 1, "10.0.0.8")
				n++
			}
		}
	}()
	time.AfterFunc(time.Second, func() { close(stop) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := Drain(ctx, m, DrainOptions{QuietFor: time.Second, Interval: 50 * time.Millisecond, Watch: true, Open: open})
	n := <-wrote
	if err != nil {
		t.Fatal(err)
	}
	if res.Reconnects != 2 || opens != 3 || !res.Final.Drained || res.Lines <= 0 || res.Lines > int64(n) {
		t.Fatalf("err %v, reconnects %d, opens %d, lines %d of %d: %+v", err, res.Reconnects, opens, res.Lines, n, res)
	}
	// More drops in a row than the budget: drain gives up with a hint.
	failures.Store(100)
	opens = 0
	_, err = Drain(ctx, m, DrainOptions{QuietFor: time.Hour, Interval: 50 * time.Millisecond, Watch: true, Open: open})
	if err == nil || !strings.Contains(err.Error(), "connection lost (after 5 reconnects)") || hint.Of(err) == "" || opens != 6 {
		t.Fatalf("after the budget: %v (opens %d)", err, opens)
	}
}
