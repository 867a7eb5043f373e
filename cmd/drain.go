package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/migrate-tool/migrate/internal/accesslog"
	"github.com/migrate-tool/migrate/internal/hint"
	"github.com/migrate-tool/migrate/internal/traffic"
	"github.com/migrate-tool/migrate/migrate"
)

func init() {
	register(func(f *Factory) *cobra.Command { return NewCmdDrain(f, nil) })
}

// DrainOptions are the arguments of `migrate drain`.
type DrainOptions struct {
	F         *Factory
	Dir       string
	Watch     bool
	Threshold int64
	QuietFor  time.Duration
	Interval  time.Duration
	LogFormat string
	AccessLog string
	Resolvers []string
	Then      []string
}

// thenActions are the --then actions drain knows.
var thenActions = []string{migrate.ThenStopProxy, migrate.ThenRemoveAgent, migrate.ThenTakeAddress}

// NewCmdDrain builds `migrate drain N`.
func NewCmdDrain(f *Factory, runF func(*DrainOptions) error) *cobra.Command {
	opts := &DrainOptions{F: f}
	cmd := &cobra.Command{
		Use:   "drain N [--watch] [--threshold R] [--quiet-for D] [--then ACTION]...",
		Short: "Watch the old host until nobody uses it any more, then stop its proxy",
		Long: `After a cutover the proxy on the old host keeps forwarding to the new one
while caches and hard-coded clients still use the old address. drain follows
three things until all hold:

  - traffic: the proxy's access log on the old host (followed through
    rotation by rename and by copytruncate) stays at or under --threshold
    requests per minute for --quiet-for;
  - DNS: every authoritative server of the switch, and every --resolver,
    serves the new address;
  - caches: the largest old TTL recorded by the DNS switch has run out.

Each interval it shows requests per minute with a sparkline of the last
15 minutes, the distinct clients still arriving and the busiest ones, the
DNS servers still stale and the time until caches expire: redrawn in place
on a terminal, one line per interval otherwise, NDJSON with --json.

When drained it exits 0 after running the --then actions, in this order,
and printing a summary:

  stop-proxy     stop the proxy recorded by the takeover
  remove-agent   remove the agent binaries and the cutover state from the old host
  take-address   move the old host's address to the new host as an alias
                 (after stopping the proxy), announced by gratuitous ARP, so
                 that clients which hard-coded the IP keep working; the old
                 host gives the address up, so reach it another way afterwards

Ctrl-C leaves everything as it was (exit 130). Without --watch it checks
once, from the requests the log holds for the last --quiet-for: exit 0 if
drained, 3 if not yet.`,
		Example: `  migrate drain web --watch --then stop-proxy
  migrate drain web --watch --then remove-agent --then take-address
  migrate drain web --watch --threshold 0 --quiet-for 30m --resolver 9.9.9.9
  migrate drain web || echo "not drained yet"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Dir = args[0]
			if err := opts.validate(); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return drainRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&opts.Watch, "watch", false, "follow until drained (otherwise check once)")
	fl.Int64Var(&opts.Threshold, "threshold", migrate.DefaultDrainThreshold, "requests per minute at or under which the old host counts as quiet")
	fl.DurationVar(&opts.QuietFor, "quiet-for", migrate.DefaultQuietFor, "how long traffic must stay under the threshold")
	fl.DurationVar(&opts.Interval, "interval", migrate.DefaultDrainInterval, "time between checks")
	fl.StringVar(&opts.LogFormat, "log-format", "", "the proxy log's format (default: as recorded by the takeover, else detected): "+formatNames())
	fl.StringVar(&opts.AccessLog, "access-log", "", "follow this log on the old host instead of the proxy's (e.g. a Pound's; the format is detected)")
	fl.StringArrayVar(&opts.Resolvers, "resolver", nil, "caching resolver ADDR[:PORT] to watch too (repeatable)")
	fl.StringArrayVar(&opts.Then, "then", nil, "action once drained: stop-proxy, remove-agent, take-address (repeatable)")
	return cmd
}

func (o *DrainOptions) validate() error {
	switch {
	case o.Threshold < 0:
		return usagef("--threshold must be 0 or more requests per minute")
	case o.QuietFor < time.Second:
		return usagef("--quiet-for must be at least 1s")
	case o.Interval < 100*time.Millisecond:
		return usagef("--interval must be at least 100ms")
	case len(o.Then) > 0 && !o.Watch:
		return usagef("--then needs --watch")
	}
	if o.LogFormat != "" {
		if _, err := accesslog.LookupFormat(o.LogFormat); err != nil {
			return usagef("--log-format: %v", err)
		}
	}
	for _, t := range o.Then {
		if !slices.Contains(thenActions, t) {
			return usagef("--then %q: want one of %s", t, strings.Join(thenActions, ", "))
		}
	}
	return nil
}

func drainRun(ctx context.Context, opts *DrainOptions) error {
	f := opts.F
	m, err := migrate.Open(opts.Dir)
	if err != nil {
		return err
	}
	defer m.Close()
	view := newDrainView(f, opts)
	res, err := migrate.Drain(ctx, m, migrate.DrainOptions{
		Threshold: opts.Threshold, QuietFor: opts.QuietFor, Interval: opts.Interval,
		LogFormat: opts.LogFormat, AccessLog: opts.AccessLog, Resolvers: opts.Resolvers, Watch: opts.Watch, Then: opts.Then,
		Open: f.OpenHost, Update: view.update, Logger: f.Logger,
	})
	if err != nil {
		if res != nil && errors.Is(err, migrate.ErrNotDrained) {
			view.done()
		}
		return err
	}
	view.done()
	if opts.Watch {
		if err := migrate.RecordDrain(m, res); err != nil {
			return err
		}
	}
	if err := printDrainSummary(f, res); err != nil {
		return err
	}
	for _, t := range res.Then {
		if !t.OK {
			return hint.WithExit(fmt.Errorf("drained, but %s failed: %s", t.Action, t.Detail), hint.ExitPartial)
		}
	}
	return nil
}

// drainView prints each check: NDJSON, one line per interval, or a block
// redrawn in place on a terminal.
type drainView struct {
	f     *Factory
	opts  *DrainOptions
	tty   bool
	lines int // lines of the block drawn last (TTY)
}

func newDrainView(f *Factory, opts *DrainOptions) *drainView {
	v := &drainView{f: f, opts: opts}
	if file, ok := f.IO.Out.(*os.File); ok && !f.JSON {
		v.tty = term.IsTerminal(int(file.Fd()))
	}
	return v
}

func (v *drainView) update(c *migrate.DrainCheck) {
	switch {
	case v.f.JSON:
		v.f.printJSON("status", c)
	case v.tty:
		block := drainBlock(c)
		if v.lines > 0 {
			fmt.Fprintf(v.f.IO.Out, "\x1b[%dA\x1b[J", v.lines)
		}
		io.WriteString(v.f.IO.Out, block)
		v.lines = strings.Count(block, "\n")
	default:
		fmt.Fprintln(v.f.IO.Out, drainLine(c))
	}
}

func (v *drainView) done() { v.lines = 0 }

func drainYesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

func topText(top []traffic.ClientCount) string {
	var s []string
	for _, c := range top {
		name := c.Client
		if name == "" {
			name = "(unparsed)"
		}
		s = append(s, fmt.Sprintf("%s %d", name, c.Requests))
	}
	return strings.Join(s, ", ")
}

// drainLine is one check on one line.
func drainLine(c *migrate.DrainCheck) string {
	dns := "dns new"
	switch {
	case !c.DNSWatched:
		dns = "dns n/a"
	case c.DNSError != "":
		dns = "dns error: " + c.DNSError
	case !c.DNSOK:
		dns = "dns stale: " + strings.Join(c.DNSPending, " ")
	}
	s := fmt.Sprintf("%s  req/min %d %s  clients %d", c.Time.Format("15:04:05"), c.ReqPerMin, c.Sparkline, c.Clients)
	if len(c.Top) > 0 {
		s += " (" + topText(c.Top) + ")"
	}
	s += fmt.Sprintf("  quiet %s/%s  %s  caches %s", c.QuietFor.Round(time.Second), c.QuietNeed, dns, cachesText(c))
	if c.Reconnects > 0 {
		s += fmt.Sprintf("  reconnects %d", c.Reconnects)
	}
	if c.Drained {
		s += "  DRAINED"
	}
	return s
}

func cachesText(c *migrate.DrainCheck) string {
	switch {
	case c.CachesExpire.IsZero():
		return "n/a"
	case c.CachesOK:
		return "expired"
	}
	return "expire in " + c.CachesLeft.Round(time.Second).String()
}

// drainBlock is one check as a small panel for a terminal.
func drainBlock(c *migrate.DrainCheck) string {
	var b strings.Builder
	fmt.Fprintf(&b, "drain  %s\n", c.Time.Format("15:04:05"))
	fmt.Fprintf(&b, "  traffic  %d req/min  %s (last %d min)  quiet %s of %s  [%s]\n",
		c.ReqPerMin, c.Sparkline, len(c.PerMinute), c.QuietFor.Round(time.Second), c.QuietNeed, drainYesNo(c.TrafficOK))
	fmt.Fprintf(&b, "  clients  %d in the last minute", c.Clients)
	if len(c.Top) > 0 {
		fmt.Fprintf(&b, ": %s", topText(c.Top))
	}
	b.WriteString("\n")
	switch {
	case !c.DNSWatched:
		b.WriteString("  dns      n/a (the migration switched no name)\n")
	case c.DNSError != "":
		fmt.Fprintf(&b, "  dns      error: %s  [no]\n", c.DNSError)
	case c.DNSOK:
		b.WriteString("  dns      every server serves the new address  [yes]\n")
	default:
		fmt.Fprintf(&b, "  dns      stale: %s  [no]\n", strings.Join(c.DNSPending, ", "))
	}
	fmt.Fprintf(&b, "  caches   %s  [%s]\n", cachesText(c), drainYesNo(c.CachesOK))
	fmt.Fprintf(&b, "  log      %d lines (%d unparsed), %d rotations, %d truncations\n", c.Lines, c.Skipped, c.Rotations, c.Truncation)
	return b.String()
}

type drainSummary struct {
	Drained     bool                  `json:"drained"`
	Started     time.Time             `json:"started"`
	Ended       time.Time             `json:"ended"`
	WatchedSecs float64               `json:"watched_s"`
	Lines       int64                 `json:"lines"`
	Skipped     int64                 `json:"skipped"`
	Rotations   int64                 `json:"rotations"`
	Truncations int64                 `json:"truncations"`
	CaughtUp    int64                 `json:"caught_up"`
	Lost        int64                 `json:"lost"`
	Reconnects  int                   `json:"reconnects"`
	Clients     int                   `json:"clients"`
	Top         []traffic.ClientCount `json:"top,omitempty"`
	Proxy       string                `json:"proxy"`
	AccessLog   string                `json:"access_log"`
	Then        []migrate.ThenResult  `json:"then,omitempty"`
}

func printDrainSummary(f *Factory, res *migrate.DrainResult) error {
	s := drainSummary{Drained: res.Final.Drained, Started: res.Started, Ended: res.Ended, WatchedSecs: res.Watching.Seconds(),
		Lines: res.Lines, Skipped: res.Skipped, Rotations: res.Tail.Rotations, Truncations: res.Tail.Truncations,
		CaughtUp: res.Tail.CaughtUp, Lost: res.Tail.Lost, Reconnects: res.Reconnects, Clients: res.Clients, Top: res.Top,
		Proxy: res.Proxy.Host, AccessLog: res.Proxy.AccessLog, Then: res.Then}
	if f.JSON {
		return f.printJSON("summary", s)
	}
	var b strings.Builder
	b.WriteString("\nDrained: the old host is no longer used.\n")
	if res.Watching > 0 {
		fmt.Fprintf(&b, "  watched     %s\n", res.Watching.Round(time.Second))
	}
	fmt.Fprintf(&b, "  requests    %d log lines through %s:%s (%d unparsed)\n", s.Lines, s.Proxy, s.AccessLog, s.Skipped)
	fmt.Fprintf(&b, "  rotations   %d by rename, %d by copytruncate (%d lines caught up from the copy, %d lost)\n",
		s.Rotations, s.Truncations, s.CaughtUp, s.Lost)
	if s.Reconnects > 0 {
		fmt.Fprintf(&b, "  reconnects  %d (lines written while reconnecting are not counted)\n", s.Reconnects)
	}
	fmt.Fprintf(&b, "  clients     %d distinct", s.Clients)
	if len(s.Top) > 0 {
		fmt.Fprintf(&b, "; busiest: %s", topText(s.Top))
	}
	b.WriteString("\n")
	for _, t := range s.Then {
		fmt.Fprintf(&b, "  then        %s: %s (%s)\n", t.Action, map[bool]string{true: "ok", false: "FAILED"}[t.OK], t.Detail)
	}
	_, err := io.WriteString(f.IO.Out, b.String())
	return err
}
