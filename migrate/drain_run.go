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
	if o.LogFormat == "" {
		o.LogFormat = ps.LogFormat
	}
	h, err := o.Open(ctx, ps.Host)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	res := &DrainResult{Started: o.Now(), Proxy: ps, DNS: sw}
	if !o.Watch {
		return drainOnce(ctx, h, sw, o, res)
	}
	if res, err = drainWatch(ctx, h, sw, o, res); err != nil {
		return nil, err
	}
	for _, t := range o.Then {
		switch t {
		case ThenStopProxy:
			res.Then = append(res.Then, StopProxy(ctx, h, ps, 10*time.Second))
		default:
			res.Then = append(res.Then, ThenResult{Action: t, Detail: "unknown action"})
		}
	}
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
	c.DNSPending, c.DNSError, c.Lines, c.Format = pending, dnsErr, rr.Lines, rr.Format
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

func drainWatch(ctx context.Context, h host.Host, sw *DNSSwitch, o DrainOptions, res *DrainResult) (*DrainResult, error) {
	w := traffic.NewWindow(res.Started, max(o.QuietFor, sparkMinutes*time.Minute)+2*time.Minute)
	// Quiet time counts from the first batch: the log is followed then.
	q := newQuietTracker(time.Time{}, o.Threshold, o.QuietFor)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	fctx, cancelFollow := context.WithCancel(ctx)
	defer cancelFollow()
	done := make(chan followOut, 1)
	go func() {
		var fr FollowResult
		err := h.CallStream(fctx, MethodFollow, FollowParams{Path: res.Proxy.AccessLog, Format: o.LogFormat}, inR, outW, &fr)
		outW.CloseWithError(io.EOF)
		done <- followOut{&fr, err}
	}()
	batches := make(chan FollowBatch, 64)
	go decodeBatches(outR, batches)

	all := map[string]int64{}
	var last FollowBatch
	tick := time.NewTicker(o.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case b, ok := <-batches:
			if !ok {
				fo := <-done
				if fo.err == nil {
					fo.err = errors.New("the follow stopped early")
				}
				return nil, fmt.Errorf("follow %s on %s: %w", res.Proxy.AccessLog, h, fo.err)
			}
			if q.start.IsZero() {
				q.start = o.Now()
			}
			addBatch(w, q, all, o.Now(), &b)
			last.Lines += b.Lines
			last.Skipped += b.Skipped
			last.Tail, last.Format = b.Tail, b.Format
		case <-tick.C:
			now := o.Now()
			dnsOK, pending, dnsErr := checkDNS(ctx, sw, o)
			c := judge(now, w, q, o, dnsOK, cachesExpire(sw))
			c.DNSPending, c.DNSError = pending, dnsErr
			c.Lines, c.Skipped, c.Format = last.Lines, last.Skipped, last.Format
			c.Rotations, c.Truncation = last.Tail.Rotations, last.Tail.Truncations
			o.Update(&c)
			if c.Drained {
				res.Final = c
				return finishWatch(inW, done, batches, w, q, all, o, res)
			}
		}
	}
}

// finishWatch ends the follow cleanly (ending its input stream) and
// collects the last batches and the totals.
func finishWatch(inW *io.PipeWriter, done chan followOut, batches chan FollowBatch, w *traffic.Window, q *quietTracker, all map[string]int64, o DrainOptions, res *DrainResult) (*DrainResult, error) {
	inW.Close()
	for b := range batches {
		addBatch(w, q, all, o.Now(), &b)
	}
	fo := <-done
	if fo.err != nil {
		return nil, fmt.Errorf("end the follow: %w", fo.err)
	}
	res.Ended = o.Now()
	res.Watching = res.Ended.Sub(res.Started)
	res.Lines, res.Skipped, res.Tail = fo.res.Lines, fo.res.Skipped, fo.res.Tail
	res.Final.Lines, res.Final.Skipped = fo.res.Lines, fo.res.Skipped
	res.Clients, res.Top = len(all), topOf(all, topClients)
	return res, nil
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
