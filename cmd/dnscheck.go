package cmd

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/migrate-tool/migrate/dnscheck"
	"github.com/migrate-tool/migrate/internal/hint"
)

func init() {
	register(func(f *Factory) *cobra.Command { return NewCmdDNSCheck(f, nil) })
}

// DNSCheckOptions are the flags of `migrate dnscheck`.
type DNSCheckOptions struct {
	F         *Factory
	Names     []string
	Zone      string
	Servers   []string
	Resolvers []string
	Expect    []string
	NSPort    int
	Timeout   time.Duration
	LongTTL   time.Duration
	Watch     bool
	Interval  time.Duration
	MaxWait   time.Duration
	OldTTL    time.Duration
	Record    string
}

// NewCmdDNSCheck builds `migrate dnscheck`.
func NewCmdDNSCheck(f *Factory, runF func(*DNSCheckOptions) error) *cobra.Command {
	opts := &DNSCheckOptions{F: f}
	cmd := &cobra.Command{
		Use:   "dnscheck NAME...",
		Short: "Check what a zone's authoritative servers and resolvers serve; --watch a change propagate",
		Long: `Ask every authoritative server of the zone (found through --resolver, or given
with --server) and every --resolver, concurrently, for the zone's SOA serial and NS
set and for NAME's A, AAAA (following CNAMEs), MX and TXT records with their TTLs.
Flags serials, NS sets or data that differ, servers that do not answer or are not
authoritative (lame), CNAME loops, MX without a second preference and long TTLs.
With --expect NAME=ADDR, shows which servers already serve ADDR; with --watch,
repeats until all do and prints when no cache can still hold the old answer.
Exit 0 when consistent (and as expected), 1 otherwise.`,
		Example: `  migrate dnscheck www.example.com --resolver 127.0.0.1
  migrate dnscheck www.example.test --server 127.0.0.1:15353 --server 127.0.0.2:15354
  migrate dnscheck www --zone example.test --server 127.0.0.1:15353 --resolver 127.0.0.1:15355 \
      --expect www.example.test=198.51.100.7 --watch --interval 1s`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Names = args
			if err := opts.validate(); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return dnscheckRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Zone, "zone", "", "zone the names are in (default: from their SOA)")
	fl.StringArrayVar(&opts.Servers, "server", nil, "authoritative server ADDR[:PORT] (repeatable; default: the zone's NS through --resolver)")
	fl.StringArrayVar(&opts.Resolvers, "resolver", nil, "caching resolver ADDR[:PORT] to find NS and to check (repeatable)")
	fl.StringArrayVar(&opts.Expect, "expect", nil, "NAME=ADDR the servers should serve (repeatable; NAME=HOST for a CNAME)")
	fl.IntVar(&opts.NSPort, "ns-port", 53, "port of authoritative servers found through NS records")
	fl.DurationVar(&opts.Timeout, "timeout", dnscheck.DefaultTimeout, "per-query timeout")
	fl.DurationVar(&opts.LongTTL, "long-ttl", dnscheck.DefaultLongTTL, "flag TTLs longer than this")
	fl.BoolVar(&opts.Watch, "watch", false, "repeat until every server and resolver serves the --expect data")
	fl.DurationVar(&opts.Interval, "interval", time.Second, "time between --watch rounds")
	fl.DurationVar(&opts.MaxWait, "max-wait", time.Hour, "give up --watch after this long")
	fl.DurationVar(&opts.OldTTL, "old-ttl", 0, "longest TTL the old answer had (default: learnt while watching, or from --record)")
	fl.StringVar(&opts.Record, "record", "", "change record of `migrate dns` to take the old TTL from")
	return cmd
}

func (o *DNSCheckOptions) validate() error {
	if len(o.Servers) == 0 && len(o.Resolvers) == 0 {
		return usagef("give the authoritative servers with --server or a resolver with --resolver")
	}
	if o.Timeout <= 0 || o.Interval <= 0 || o.MaxWait <= 0 {
		return usagef("--timeout, --interval and --max-wait must be positive")
	}
	if o.Watch && len(o.Expect) == 0 {
		return usagef("--watch needs --expect NAME=ADDR: what the servers should serve")
	}
	for _, e := range o.Expect {
		if _, err := dnscheck.ParseExpectation(e); err != nil {
			return usagef("%v", err)
		}
	}
	return nil
}

func (o *DNSCheckOptions) query() dnscheck.Query {
	q := dnscheck.Query{Names: o.Names, Zone: o.Zone, Servers: o.Servers, Resolvers: o.Resolvers,
		NSPort: o.NSPort, Timeout: o.Timeout, LongTTL: o.LongTTL, Logger: o.F.Logger}
	for _, e := range o.Expect {
		x, _ := dnscheck.ParseExpectation(e)
		q.Expect = append(q.Expect, x)
	}
	return q
}

func dnscheckRun(ctx context.Context, o *DNSCheckOptions) error {
	if o.Watch {
		return dnswatchRun(ctx, o)
	}
	rep, err := dnscheck.Check(ctx, o.query())
	if err != nil {
		return err
	}
	if o.F.JSON {
		printReportJSON(o.F, rep)
	} else {
		printReportText(o.F.IO.Out, rep)
	}
	return reportError(rep)
}

func reportError(rep *dnscheck.Report) error {
	if rep.OK {
		return nil
	}
	var kinds []string
	for _, fl := range rep.Flags {
		if fl.Severity == "error" && !contains(kinds, fl.Kind) {
			kinds = append(kinds, fl.Kind)
		}
	}
	return hint.With(fmt.Errorf("zone %s: not consistent (%s)", strings.TrimSuffix(rep.Zone, "."), strings.Join(kinds, ", ")),
		"see the flags above; a change still propagating settles with `migrate dnscheck --watch --expect NAME=ADDR`")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func dnswatchRun(ctx context.Context, o *DNSCheckOptions) error {
	wo := dnscheck.WatchOptions{Interval: o.Interval, OldTTL: o.OldTTL}
	if o.Record != "" {
		rec, err := dnscheck.ReadChange(o.Record)
		if err != nil {
			return hint.With(err, "give a change record written by `migrate dns set` or `lower-ttl`")
		}
		wo.OldTTL = max(wo.OldTTL, time.Duration(rec.MaxOldTTL)*time.Second)
	}
	wo.Progress = func(r *dnscheck.WatchRound) {
		if o.F.JSON {
			o.F.printJSON("status", watchStatus(r))
		} else {
			printRoundText(o.F.IO.Out, r)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, o.MaxWait)
	defer cancel()
	last, err := dnscheck.Watch(ctx, o.query(), wo)
	if last != nil {
		if o.F.JSON {
			printReportJSON(o.F, last.Report)
		} else {
			printWatchDone(o.F.IO.Out, last)
		}
	}
	if err != nil && last != nil && ctx.Err() == context.DeadlineExceeded {
		return hint.With(fmt.Errorf("after %s still not served by %s", o.MaxWait, strings.Join(last.Pending, ", ")),
			"check the secondaries' transfers and the resolvers, or raise --max-wait")
	}
	return err
}

func watchStatus(r *dnscheck.WatchRound) map[string]any {
	ttl := map[string]float64{}
	for k, v := range r.ResolverTTL {
		ttl[k] = v.Seconds()
	}
	m := map[string]any{"round": r.Round, "time": r.Report.Time, "done": r.Done, "pending": r.Pending,
		"resolver_ttl_s": ttl, "old_ttl_s": r.OldTTL.Seconds(), "old_ttl_known": r.OldTTLKnown}
	if !r.AuthSwitched.IsZero() {
		m["auth_switched"] = r.AuthSwitched
	}
	if !r.SafeAfter.IsZero() {
		m["safe_after"] = r.SafeAfter
	}
	return m
}

func printRoundText(w io.Writer, r *dnscheck.WatchRound) {
	var parts []string
	for _, s := range r.Report.Servers {
		state := "old"
		if s.Expected != nil && *s.Expected {
			state = "new"
		} else if s.Error != "" {
			state = "error"
		}
		parts = append(parts, fmt.Sprintf("%s=%s", s.Server, state))
	}
	for _, s := range r.Report.Resolvers {
		if s.Expected != nil && *s.Expected {
			parts = append(parts, fmt.Sprintf("%s(resolver)=new", s.Server))
		} else if ttl, ok := r.ResolverTTL[s.Server]; ok {
			parts = append(parts, fmt.Sprintf("%s(resolver)=old, cached %s more", s.Server, ttl))
		} else {
			parts = append(parts, fmt.Sprintf("%s(resolver)=not yet", s.Server))
		}
	}
	fmt.Fprintf(w, "%s round %d: %s\n", r.Report.Time.Format("15:04:05.000"), r.Round, strings.Join(parts, "  "))
}

func printWatchDone(w io.Writer, r *dnscheck.WatchRound) {
	if !r.Done {
		fmt.Fprintf(w, "not done: waiting for %s\n", strings.Join(r.Pending, ", "))
		return
	}
	fmt.Fprintf(w, "done after %d rounds: every server and resolver serves the expected data\n", r.Round)
	if !r.AuthSwitched.IsZero() {
		fmt.Fprintf(w, "authoritative servers all switched by %s\n", r.AuthSwitched.UTC().Format(time.RFC3339Nano))
	}
	if !r.SafeAfter.IsZero() {
		if r.OldTTLKnown {
			fmt.Fprintf(w, "no cache can hold the old answer after %s (old TTL %s)\n", r.SafeAfter.UTC().Format(time.RFC3339Nano), r.OldTTL)
		} else {
			fmt.Fprintf(w, "the watched resolvers dropped the old answer by %s; other caches: old TTL unknown (the servers had switched before the watch began): pass --old-ttl or --record\n", r.SafeAfter.UTC().Format(time.RFC3339Nano))
		}
	}
}

func printReportJSON(f *Factory, rep *dnscheck.Report) {
	for _, s := range rep.Servers {
		f.printJSON("server", s)
	}
	for _, s := range rep.Resolvers {
		f.printJSON("resolver", s)
	}
	flags := rep.Flags
	if flags == nil {
		flags = []dnscheck.Flag{}
	}
	f.printJSON("summary", map[string]any{"zone": rep.Zone, "ok": rep.OK, "flags": flags,
		"servers": len(rep.Servers), "resolvers": len(rep.Resolvers), "duration_s": rep.Duration.Seconds()})
}

func printReportText(w io.Writer, rep *dnscheck.Report) {
	fmt.Fprintf(w, "zone %s: %d authoritative servers, %d resolvers, checked in %s\n\n",
		rep.Zone, len(rep.Servers), len(rep.Resolvers), rep.Duration.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tROLE\tAA\tSERIAL\tRTT\tEXPECTED\tNS / ERROR")
	for _, s := range append(append([]dnscheck.ServerResult{}, rep.Servers...), rep.Resolvers...) {
		exp := "-"
		if s.Expected != nil {
			exp = map[bool]string{true: "yes", false: "no"}[*s.Expected]
		}
		detail := strings.Join(s.NS, " ")
		if s.Error != "" {
			detail = s.Error
		}
		serial := "-"
		if s.Serial != 0 {
			serial = fmt.Sprint(s.Serial)
		}
		rtt := "-"
		if s.RTT > 0 {
			rtt = s.RTT.Round(10 * time.Microsecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Server, s.Role, yesNo(s.Authoritative), serial, rtt, exp, detail)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tNAME\tTYPE\tTTL\tVALUE")
	for _, s := range append(append([]dnscheck.ServerResult{}, rep.Servers...), rep.Resolvers...) {
		seen := map[string]bool{}
		for _, a := range s.Answers {
			printAnswer(tw, s.Server, a, seen)
		}
	}
	tw.Flush()
	if len(rep.Flags) > 0 {
		fmt.Fprintln(w)
		for _, fl := range rep.Flags {
			fmt.Fprintf(w, "%-7s %-15s %s\n", fl.Severity, fl.Kind, fl.Message)
		}
	}
	if rep.OK {
		fmt.Fprintln(w, "\nconsistent")
	}
}

func printAnswer(tw io.Writer, server string, a dnscheck.Answer, seen map[string]bool) {
	for _, r := range a.Chain {
		line := fmt.Sprintf("%s\t%s\t%s\t%d\t%s\n", server, r.Name, r.Type, r.TTL, r.Value)
		if !seen[line] {
			seen[line] = true
			fmt.Fprint(tw, line)
		}
	}
	if a.Loop {
		fmt.Fprintf(tw, "%s\t%s\t%s\t-\tCNAME LOOP\n", server, a.Name, a.Type)
	}
	if a.Error != "" {
		fmt.Fprintf(tw, "%s\t%s\t%s\t-\t%s\n", server, a.Name, a.Type, a.Error)
	} else if line := fmt.Sprintf("%s\t%s\t*\t-\t%s\n", server, a.Name, a.Rcode); len(a.Records) == 0 && a.Rcode != "NOERROR" && !seen[line] {
		seen[line] = true
		fmt.Fprint(tw, line)
	}
	for _, r := range a.Records {
		v := r.Value
		if r.Type == "MX" {
			v = fmt.Sprintf("%d %s", r.Pref, r.Value)
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%d\t%s\n", server, r.Name, r.Type, r.TTL, v)
		if !seen[line] {
			seen[line] = true
			fmt.Fprint(tw, line)
		}
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
