package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/migrate-tool/migrate/dnscheck"
	"github.com/migrate-tool/migrate/internal/hint"
	"github.com/migrate-tool/migrate/internal/host"
	"github.com/migrate-tool/migrate/internal/tail"
	"github.com/migrate-tool/migrate/internal/traffic"
)

// maxRunClients bounds the distinct clients remembered for the summary.
const maxRunClients = 100000

// Drain watches the old host until it is drained: every authoritative
// server (and resolver) serves the new address, the old TTLs have run out
// and the traffic through the proxy stayed at or under the threshold for
// the quiet period. Without o.Watch it checks once and returns
// ErrNotDrained (exit 3) with the result when not drained yet. It changes
// nothing; the --then actions are separate (StopProxy).
func Drain(ctx context.Context, m *Migration, o DrainOptions) (*DrainResult, error) {
	o.defaults()
	ps, sw, err := DrainInputs(m)
	if err != nil {
		return nil, err
	}
	if o.AccessLog != "" {
		// Another log to watch (e.g. the old service's own, or a Pound's):
		// the journalled format does not apply to it.
		ps.AccessLog = o.AccessLog
	} else if o.LogFormat == "" {
		o.LogFormat = ps.LogFormat
	}
	if ps.AccessLog == "" {
		return nil, hint.With(fmt.Errorf("%s: the takeover recorded no proxy access log", m.Dir),
			"name the log to follow on the old host with --access-log PATH")
	}
	h, err := o.Open(ctx, ps.Host)
	if err != nil {
		return nil, err
	}
	// A watch may reconnect: close whichever connection is current.
	defer func() { h.Close() }()
	res := &DrainResult{Started: o.Now(), Proxy: ps, DNS: sw}
	if !o.Watch {
		return drainOnce(ctx, h, sw, o, res)
	}
	if res, err = drainWatch(ctx, &h, sw, o, res); err != nil {
		return nil, err
	}
	res.Then = runThen(ctx, h, m, ps, o)
	return res, nil
}

// ThenStopProxy is the --then action that stops the proxy.
const ThenStopProxy = "stop-proxy"

func drainOnce(ctx context.Context, h host.Host, sw *DNSSwitch, o DrainOptions, res *DrainResult) (*DrainResult, error) {
	now := o.Now()
	start := now.Add(-o.QuietFor - time.Minute)
	var rr RecentResult
	if err := h.Call(ctx, MethodRecent, RecentParams{Path: res.Proxy.AccessLog, Format: o.LogFormat, Since: start}, &rr); err != nil {
		return nil, err
	}
	w := traffic.NewWindow(start, o.QuietFor+2*time.Minute)
	q := newQuietTracker(start, o.Threshold, o.QuietFor)
	secs := slices.Sorted(maps.Keys(rr.Seconds))
	for _, sec := range secs {
		n := rr.Seconds[sec]
		for range n {
			w.Add(time.Unix(sec, 0), "")
		}
		q.add(time.Unix(sec, 0), n)
	}
	dnsOK, pending, dnsErr := checkDNS(ctx, sw, o)
	c := judge(now, w, q, o, dnsOK, cachesExpire(sw))
	c.DNSPending, c.DNSError, c.Lines, c.Format, c.DNSWatched = pending, dnsErr, rr.Lines, rr.Format, dnsWatched(sw)
	res.Clients, res.Top = len(rr.Clients), topOf(rr.Clients, topClients)
	c.Clients, c.Top = res.Clients, res.Top
	res.Final, res.Ended, res.Lines = c, now, rr.Lines
	o.Update(&c)
	if !c.Drained {
		return res, hint.WithExit(hint.With(ErrNotDrained, notDrainedHint(&c)), hint.ExitPartial)
	}
	return res, nil
}

func notDrainedHint(c *DrainCheck) string {
	var why []string
	if !c.DNSOK {
		why = append(why, "DNS still stale on "+strings.Join(c.DNSPending, ", "))
	}
	if !c.CachesOK {
		why = append(why, "old TTLs run out in "+c.CachesLeft.Round(time.Second).String())
	}
	if !c.TrafficOK {
		why = append(why, fmt.Sprintf("traffic quiet for %s of %s", c.QuietFor, c.QuietNeed))
	}
	return strings.Join(why, "; ") + "; follow it with --watch"
}

type followOut struct {
	res *FollowResult
	err error
}

// endReader is the input stream of a follow: it carries no data and ends
// (io.EOF) when end is closed. Until then a Read returns nothing every
// 200 ms, so that the agent client, which reads the input stream while it
// waits for the response, notices promptly that a call has failed.
type endReader struct{ end chan struct{} }

func (r endReader) Read(p []byte) (int, error) {
	select {
	case <-r.end:
		return 0, io.EOF
	case <-time.After(200 * time.Millisecond):
		return 0, nil
	}
}

// followSession is one run of MethodFollow on the old host.
type followSession struct {
	end     chan struct{} // closed to end the follow
	done    chan followOut
	batches chan FollowBatch
	cancel  context.CancelFunc
	started time.Time
	last    tail.Stats // from the latest batch
	lines   int64      // lines in the batches received
}

func startFollow(ctx context.Context, h host.Host, p FollowParams) *followSession {
	outR, outW := io.Pipe()
	fctx, cancel := context.WithCancel(ctx)
	s := &followSession{end: make(chan struct{}), done: make(chan followOut, 1), batches: make(chan FollowBatch, 64), cancel: cancel, started: time.Now()}
	go func() {
		var fr FollowResult
		err := h.CallStream(fctx, MethodFollow, p, endReader{s.end}, outW, &fr)
		outW.CloseWithError(io.EOF)
		s.done <- followOut{&fr, err}
	}()
	go decodeBatches(outR, s.batches)
	return s
}

// Reconnect budget of a drain: a follow that fails (the SSH connection
// dropped) is restarted on a new connection up to maxReconnects times in a
// row, waiting 1 s, 2 s, 4 s … (at most 30 s) first; a follow that ran for
// a minute resets the count.
const (
	maxReconnects   = 5
	reconnectResets = time.Minute
)

// reconnectBase is the first wait before a reconnect (a variable for tests).
var reconnectBase = time.Second

// watcher is the state of a drain --watch.
type watcher struct {
	o    DrainOptions
	res  *DrainResult
	sw   *DNSSwitch
	conn *host.Host
	w    *traffic.Window
	q    *quietTracker
	all  map[string]int64
	last FollowBatch
	// Totals of the follows that failed.
	prevLines          int64
	prevTail           tail.Stats
	reconnects, inARow int
	// The proxy's request counter at the first check, the lines followed
	// then, and the requests not in the log counted so far (see unlogged).
	counted                      bool
	reqBase, linesBase, credited int64
}

func drainWatch(ctx context.Context, conn *host.Host, sw *DNSSwitch, o DrainOptions, res *DrainResult) (*DrainResult, error) {
	wt := &watcher{o: o, res: res, sw: sw, conn: conn, all: map[string]int64{},
		w: traffic.NewWindow(res.Started, max(o.QuietFor, sparkMinutes*time.Minute)+2*time.Minute),
		// Quiet time counts from the first batch: the log is followed then.
		q: newQuietTracker(time.Time{}, o.Threshold, o.QuietFor)}
	params := FollowParams{Path: res.Proxy.AccessLog, Format: o.LogFormat}
	sess := startFollow(ctx, *conn, params)
	defer func() { sess.cancel() }()
	tick := time.NewTicker(o.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case b, ok := <-sess.batches:
			if !ok {
				next, err := wt.reconnect(ctx, sess, params)
				if err != nil {
					return nil, err
				}
				sess = next
				continue
			}
			wt.batch(sess, &b)
		case <-tick.C:
			c := wt.check(ctx)
			o.Update(&c)
			if c.Drained {
				res.Final = c
				return wt.finish(sess)
			}
		}
	}
}

func (wt *watcher) batch(sess *followSession, b *FollowBatch) {
	now := wt.o.Now()
	if wt.q.start.IsZero() {
		wt.q.start = now
	}
	addBatch(wt.w, wt.q, wt.all, now, b)
	wt.last.Lines += b.Lines
	wt.last.Skipped += b.Skipped
	wt.last.Format = b.Format
	sess.last, sess.lines = b.Tail, sess.lines+b.Lines
	wt.last.Tail = addStats(wt.prevTail, b.Tail)
}

// unlogged counts, from the holding proxy's own counter, the requests
// its access log does not show (TCP connections and UDP answers: mail and
// DNS), as traffic of the pseudo-client "(tcp/udp)". Only the excess of
// the counter over the lines followed is added, so HTTP requests, which
// are in the log, are not counted twice.
func (wt *watcher) unlogged(ctx context.Context) {
	ps := wt.res.Proxy
	if ps.ControlSocket == "" || !notLogged(ps) || wt.q.start.IsZero() {
		return
	}
	var n int64
	if err := (*wt.conn).Call(ctx, MethodHoldReqs, HoldCtlParams{Socket: ps.ControlSocket}, &n); err != nil {
		wt.o.Logger.Debug("proxy request counter", "err", err)
		return
	}
	if !wt.counted {
		wt.counted, wt.reqBase, wt.linesBase = true, n, wt.last.Lines
		return
	}
	extra := (n - wt.reqBase) - (wt.last.Lines - wt.linesBase)
	if extra > wt.credited {
		d := extra - wt.credited
		wt.credited = extra
		addBatch(wt.w, wt.q, wt.all, wt.o.Now(), &FollowBatch{Lines: d, Clients: map[string]int64{"(tcp/udp)": d}})
	}
}

// notLogged reports whether the proxy forwards ports whose traffic its
// access log does not show (any port not in HTTP mode).
func notLogged(ps ProxyState) bool {
	for _, p := range ps.Ports {
		if !strings.HasSuffix(p, "("+ModeHTTP+")") {
			return true
		}
	}
	return false
}

func (wt *watcher) check(ctx context.Context) DrainCheck {
	wt.unlogged(ctx)
	dnsOK, pending, dnsErr := checkDNS(ctx, wt.sw, wt.o)
	c := judge(wt.o.Now(), wt.w, wt.q, wt.o, dnsOK, cachesExpire(wt.sw))
	c.DNSPending, c.DNSError, c.DNSWatched = pending, dnsErr, dnsWatched(wt.sw)
	c.Lines, c.Skipped, c.Format = wt.last.Lines, wt.last.Skipped, wt.last.Format
	c.Rotations, c.Truncation = wt.last.Tail.Rotations, wt.last.Tail.Truncations
	c.Reconnects = wt.reconnects
	return c
}

// reconnect replaces a follow that failed with one on a new connection,
// within the reconnect budget. Lines written while no follow ran are not
// counted, so the quiet period starts again.
func (wt *watcher) reconnect(ctx context.Context, sess *followSession, p FollowParams) (*followSession, error) {
	fo := <-sess.done
	sess.cancel()
	if fo.err == nil {
		fo.err = errors.New("the follow stopped early")
	}
	ferr := fmt.Errorf("follow %s on %s: %w", p.Path, *wt.conn, fo.err)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if time.Since(sess.started) >= reconnectResets {
		wt.inARow = 0
	}
	if wt.inARow >= maxReconnects {
		return nil, hint.With(fmt.Errorf("%w (after %d reconnects)", ferr, wt.inARow), "check the old host and the connection to it, then run drain again")
	}
	wt.prevLines += sess.lines
	wt.prevTail = addStats(wt.prevTail, sess.last)
	wait := min(reconnectBase<<wt.inARow, 30*time.Second)
	wt.inARow++
	wt.reconnects++
	wt.o.Logger.Warn("the follow of the proxy log failed; reconnecting", "err", ferr, "in", wait)
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(wait):
	}
	h, err := wt.o.Open(ctx, wt.res.Proxy.Host)
	if err != nil {
		return nil, fmt.Errorf("%w; reconnect: %w", ferr, err)
	}
	(*wt.conn).Close()
	*wt.conn = h
	wt.q.restart(wt.o.Now())
	return startFollow(ctx, h, p), nil
}

// finish ends the follow cleanly (ending its input stream) and collects
// the last batches and the totals.
func (wt *watcher) finish(sess *followSession) (*DrainResult, error) {
	close(sess.end)
	for b := range sess.batches {
		wt.batch(sess, &b)
	}
	fo := <-sess.done
	if fo.err != nil {
		return nil, fmt.Errorf("end the follow: %w", fo.err)
	}
	res := wt.res
	res.Ended = wt.o.Now()
	res.Watching = res.Ended.Sub(res.Started)
	// The follows' own totals; the unparsed lines are summed from the
	// batches, which carry every line (the last one flushed at the end).
	res.Lines, res.Skipped = wt.prevLines+fo.res.Lines, wt.last.Skipped
	res.Tail = addStats(wt.prevTail, fo.res.Tail)
	res.Reconnects = wt.reconnects
	res.Final.Lines, res.Final.Skipped = res.Lines, res.Skipped
	res.Clients, res.Top = len(wt.all), topOf(wt.all, topClients)
	return res, nil
}

func addStats(a, b tail.Stats) tail.Stats {
	return tail.Stats{Lines: a.Lines + b.Lines, Bytes: a.Bytes + b.Bytes, Rotations: a.Rotations + b.Rotations,
		Truncations: a.Truncations + b.Truncations, CaughtUp: a.CaughtUp + b.CaughtUp, Lost: a.Lost + b.Lost,
		LongLines: a.LongLines + b.LongLines}
}

func decodeBatches(r io.Reader, out chan<- FollowBatch) {
	defer close(out)
	dec := json.NewDecoder(r)
	for {
		var b FollowBatch
		if err := dec.Decode(&b); err != nil {
			io.Copy(io.Discard, r)
			return
		}
		out <- b
	}
}

// addBatch counts a batch's requests at now (the time they were seen:
// log time stamps may be coarse, late or in another zone).
func addBatch(w *traffic.Window, q *quietTracker, all map[string]int64, now time.Time, b *FollowBatch) {
	q.add(now, b.Lines)
	for c, n := range b.Clients {
		for range n {
			w.Add(now, c)
		}
		if _, ok := all[c]; ok || len(all) < maxRunClients {
			all[c] += n
		}
	}
	for range b.Skipped {
		w.Add(now, "")
	}
}

func topOf(m map[string]int64, n int) []traffic.ClientCount {
	out := make([]traffic.ClientCount, 0, len(m))
	for c, k := range m {
		out = append(out, traffic.ClientCount{Client: c, Requests: k})
	}
	slices.SortFunc(out, func(a, b traffic.ClientCount) int {
		if a.Requests != b.Requests {
			return int(b.Requests - a.Requests)
		}
		return strings.Compare(a.Client, b.Client)
	})
	return traffic.Top(out, n)
}

// cachesExpire is when the last cache holding an old answer expires.
func cachesExpire(sw *DNSSwitch) time.Time {
	if sw == nil {
		return time.Time{}
	}
	t := sw.CachesExpire
	for _, c := range sw.Changes {
		if c == nil {
			continue
		}
		if c.CachesExpire.After(t) {
			t = c.CachesExpire
		}
		if !sw.SwitchedAt.IsZero() {
			if e := sw.SwitchedAt.Add(time.Duration(c.MaxOldTTL) * time.Second); e.After(t) {
				t = e
			}
		}
	}
	return t
}

func dnsWatched(sw *DNSSwitch) bool { return sw != nil && len(sw.Names) > 0 }

// checkDNS asks every authoritative server and resolver whether it serves
// the new address for every switched name.
func checkDNS(ctx context.Context, sw *DNSSwitch, o DrainOptions) (ok bool, pending []string, errText string) {
	if sw == nil || len(sw.Names) == 0 {
		return true, nil, ""
	}
	exp := make([]dnscheck.Expectation, 0, len(sw.Names))
	for _, n := range sw.Names {
		exp = append(exp, dnscheck.Expectation{Name: n, Value: sw.NewAddr})
	}
	cctx, cancel := context.WithTimeout(ctx, max(3*time.Second, o.Interval))
	defer cancel()
	rep, err := dnscheck.Check(cctx, dnscheck.Query{Names: sw.Names, Servers: sw.Servers, Resolvers: o.Resolvers,
		Expect: exp, Timeout: 2 * time.Second, Logger: o.Logger})
	if err != nil {
		return false, nil, err.Error()
	}
	for _, s := range append(slices.Clone(rep.Servers), rep.Resolvers...) {
		if s.Expected == nil || !*s.Expected {
			pending = append(pending, s.Server)
		}
	}
	return len(pending) == 0 && len(rep.Servers) > 0, pending, ""
}

// StopProxy stops the forwarding proxy on the old host: the "stop" command
// on its control socket when the takeover recorded one, else SIGTERM to its
// PID; then it waits up to timeout for the PID to exit.
func StopProxy(ctx context.Context, h host.Host, ps ProxyState, timeout time.Duration) ThenResult {
	r := ThenResult{Action: ThenStopProxy}
	if ps.PID <= 1 {
		r.Detail = "the takeover recorded no proxy PID"
		return r
	}
	pid := strconv.Itoa(ps.PID)
	alive := func() bool { return h.Exec(ctx, []string{"kill", "-0", pid}, nil, io.Discard, io.Discard) == nil }
	if !alive() {
		r.OK, r.Detail = true, "proxy PID "+pid+" was not running"
		return r
	}
	how := "SIGTERM"
	var ctlErr error
	if ps.ControlSocket != "" {
		var state string
		if ctlErr = h.Call(ctx, MethodHoldCtl, HoldCtlParams{Socket: ps.ControlSocket, Request: HoldRequest{Cmd: HoldCmdStop}}, &state); ctlErr == nil {
			how = "control socket"
		}
	}
	if how == "SIGTERM" {
		var stderr strings.Builder
		if err := h.Exec(ctx, []string{"kill", "-TERM", pid}, nil, io.Discard, &stderr); err != nil {
			r.Detail = fmt.Sprintf("kill -TERM %s: %v %s", pid, err, strings.TrimSpace(stderr.String()))
			if ctlErr != nil {
				r.Detail += "; control socket: " + ctlErr.Error()
			}
			return r
		}
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !alive() {
			r.OK, r.Detail = true, "proxy PID "+pid+" stopped ("+how+")"
			return r
		}
		select {
		case <-ctx.Done():
			r.Detail = ctx.Err().Error()
			return r
		case <-time.After(100 * time.Millisecond):
		}
	}
	r.Detail = fmt.Sprintf("proxy PID %s still running %s after SIGTERM", pid, timeout)
	return r
}

// RecordDrain journals the drain as done, with its result.
func RecordDrain(m *Migration, res *DrainResult) error {
	return m.Journal.Append(StepDrain, StepDone, res, nil)
}
