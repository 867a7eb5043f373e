package cmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/migrate-tool/migrate/internal/accesslog"
	"github.com/migrate-tool/migrate/internal/hint"
	"github.com/migrate-tool/migrate/internal/host"
	"github.com/migrate-tool/migrate/migrate"
)

func init() {
	register(func(f *Factory) *cobra.Command { return NewCmdPlan(f, nil) })
}

// PlanOptions are the arguments of `migrate plan`.
type PlanOptions struct {
	F           *Factory
	From, To    string
	Service     string
	Port        int
	Name, Dir   string
	Domains     []string
	DNSServers  []string
	TSIGKeyFile string
	AccessLog   string
	LogFormat   string
	Bandwidth   int64 // Mbit/s from the flag, bytes/s after validation
	SMTPPort    int
}

// NewCmdPlan builds `migrate plan`.
func NewCmdPlan(f *Factory, runF func(*PlanOptions) error) *cobra.Command {
	opts := &PlanOptions{F: f}
	var mbit int64
	cmd := &cobra.Command{
		Use:   "plan --from OLD --to NEW --service S [--name N | --dir D] [--domain NAME...]",
		Short: "Read both hosts, the DNS and the access log, and write a migration plan",
		Long: `Plan moving service S from host OLD to host NEW and create the migration
directory (./N, or --dir) holding plan.json and the journal every later
command reads.

The plan says what will move (packages, config, data, libraries; sizes; what
the target already holds; estimated transfer and cutover times), the DNS
(records, TTLs, the authoritative servers and whether they agree; when to
lower the TTLs and the earliest moment a switch can be complete), the
traffic by hour of day from the old host's access log with the quietest
hour for the cutover, and the risks with what to change for each.

Nothing is changed on either host.`,
		Example: `  migrate plan --from root@web1 --to root@web2 --service nginx --name web \
      --domain www.example.com --dns-server ns1.example.com
  migrate plan --from local --to ssh://root@10.0.0.2 --service nginx --json | jq .risks`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := opts.validate(mbit); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return planRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.From, "from", "", "the host the service runs on now (local, user@host, ssh://user@host:port)")
	fl.StringVar(&opts.To, "to", "", "the host it moves to")
	fl.StringVar(&opts.Service, "service", "", "the service: package, process or profile name (nginx, apache2, postfix, bind9)")
	fl.IntVar(&opts.Port, "port", 0, "or: the port the service listens on")
	fl.StringVar(&opts.Name, "name", "", "migration name; the directory is ./NAME (default: the service name)")
	fl.StringVar(&opts.Dir, "dir", "", "migration directory (instead of ./NAME)")
	fl.StringArrayVar(&opts.Domains, "domain", nil, "a name clients use to reach the service (repeatable)")
	fl.StringArrayVar(&opts.DNSServers, "dns-server", nil, "authoritative server ADDR[:PORT] (repeatable; default: the zone's NS)")
	fl.StringVar(&opts.TSIGKeyFile, "tsig-key", "", "TSIG key file for the DNS switch (checked, never printed or copied)")
	fl.StringVar(&opts.AccessLog, "access-log", "", "the service's access log on the old host (default: from its config)")
	fl.StringVar(&opts.LogFormat, "log-format", "auto", "access log format: auto, "+formatNames())
	fl.Int64Var(&mbit, "bandwidth", 100, "bandwidth between the hosts in Mbit/s, for the time estimates")
	fl.IntVar(&opts.SMTPPort, "smtp-port", migrate.SMTPPort, "port of the MX relay test (mail services)")
	fl.MarkHidden("smtp-port")
	return cmd
}

func formatNames() string {
	var s []string
	for _, f := range accesslog.Formats() {
		s = append(s, string(f))
	}
	return strings.Join(s, ", ")
}

func (o *PlanOptions) validate(mbit int64) error {
	switch {
	case o.From == "":
		return usagef("--from is required")
	case o.To == "":
		return usagef("--to is required")
	case o.Service == "" && o.Port == 0:
		return usagef("--service or --port is required")
	case o.Port < 0 || o.Port > 65535:
		return usagef("--port %d: want 1-65535", o.Port)
	case o.Name != "" && o.Dir != "":
		return usagef("give --name or --dir, not both")
	case mbit <= 0:
		return usagef("--bandwidth must be positive")
	case len(o.DNSServers) > 0 && len(o.Domains) == 0:
		return usagef("--dns-server needs --domain")
	}
	for _, s := range []string{o.From, o.To} {
		if _, err := host.ParseSpec(s); err != nil {
			return usagef("%v", err)
		}
	}
	if o.From == o.To {
		return usagef("--from and --to are the same host")
	}
	if _, err := accesslog.LookupFormat(o.LogFormat); err != nil {
		return usagef("--log-format: %v", err)
	}
	if o.Dir == "" {
		if o.Name == "" {
			o.Name = o.Service
		}
		if o.Name == "" {
			o.Name = fmt.Sprintf("port-%d", o.Port)
		}
		if strings.ContainsAny(o.Name, "/\x00") || o.Name == "." || o.Name == ".." {
			return usagef("--name %q: want a plain name (use --dir for a path)", o.Name)
		}
		o.Dir = o.Name
	}
	if o.Name == "" {
		o.Name = filepath.Base(filepath.Clean(o.Dir))
	}
	o.Bandwidth = mbit * 1_000_000 / 8
	return nil
}

func planRun(ctx context.Context, opts *PlanOptions) error {
	f := opts.F
	if _, err := os.Stat(filepath.Join(opts.Dir, migrate.PlanFile)); err == nil {
		return hint.With(fmt.Errorf("migration %s already exists", opts.Dir),
			"use another --name or --dir, or see it with `migrate status "+opts.Dir+"`")
	}
	format := opts.LogFormat
	if format == "auto" {
		format = ""
	}
	p, err := migrate.MakePlan(ctx, migrate.PlanOptions{
		Name: opts.Name, From: opts.From, To: opts.To, Service: opts.Service, Port: opts.Port,
		Domains: opts.Domains, DNSServers: opts.DNSServers, TSIGKeyFile: opts.TSIGKeyFile,
		AccessLog: opts.AccessLog, LogFormat: format, Bandwidth: opts.Bandwidth, SMTPPort: opts.SMTPPort,
		Open:     f.OpenHost,
		Progress: func(s string) { planProgress(f, "%s", s) },
		Logger:   f.Logger,
	})
	if err != nil {
		return err
	}
	m, err := migrate.Create(opts.Dir, p)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.Journal.Append(migrate.StepPlan, migrate.StepDone, planRecord{Dir: opts.Dir, Risks: len(p.Risks)}, nil); err != nil {
		return err
	}
	if f.JSON {
		return f.printJSON("plan", planJSON{Dir: opts.Dir, Plan: p})
	}
	return printPlanText(f.IO.Out, opts.Dir, p, time.Now())
}

type planRecord struct {
	Dir   string `json:"dir"`
	Risks int    `json:"risks"`
}

type planJSON struct {
	Dir string `json:"dir"`
	*migrate.Plan
}

// planProgress writes one progress line to stderr, for people watching
// (nothing with --json).
func planProgress(f *Factory, format string, a ...any) {
	if f.JSON {
		return
	}
	fmt.Fprintf(f.IO.ErrOut, "migrate: "+format+"\n", a...)
}

// printPlanText renders the plan for people, one section after another.
func printPlanText(w io.Writer, dir string, p *migrate.Plan, now time.Time) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Plan %q: move %s from %s to %s\n", p.Name, p.Service, p.From, p.To)
	fmt.Fprintf(&b, "Directory: %s (next: `migrate capture %s`)\n", dir, dir)
	planHostsText(&b, p)
	planMoveText(&b, p.Move)
	planDNSText(&b, p)
	planTrafficText(&b, p, now)
	if !p.SuggestedCutover.IsZero() {
		fmt.Fprintf(&b, "\nSUGGESTED CUTOVER\n  %s: the first quietest hour after the lowered TTLs are in effect\n",
			p.SuggestedCutover.Format("2006-01-02 15:04 -07:00"))
	}
	planRisksText(&b, p.Risks)
	if len(p.Notes) > 0 {
		b.WriteString("\nNOTES\n")
		for _, n := range p.Notes {
			fmt.Fprintf(&b, "  - %s\n", n)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func planHostsText(b *strings.Builder, p *migrate.Plan) {
	b.WriteString("\nHOSTS\n")
	tw := tabwriter.NewWriter(b, 0, 4, 2, ' ', 0)
	o, n := p.Hosts.Old, p.Hosts.New
	fmt.Fprintf(tw, "  \told\tnew\n")
	fmt.Fprintf(tw, "  Host\t%s\t%s\n", o.Spec, n.Spec)
	fmt.Fprintf(tw, "  Hostname\t%s\t%s\n", dash(o.Hostname), dash(n.Hostname))
	fmt.Fprintf(tw, "  OS\t%s\t%s\n", dash(o.OS), dash(n.OS))
	fmt.Fprintf(tw, "  Arch\t%s\t%s\n", dash(o.Arch), dash(n.Arch))
	fmt.Fprintf(tw, "  Kernel\t%s\t%s\n", dash(o.Kernel), dash(n.Kernel))
	fmt.Fprintf(tw, "  CPUs, memory\t%d, %s\t%d, %s\n", o.CPUs, migrate.Bytes(int64(o.MemTotal)), n.CPUs, migrate.Bytes(int64(n.MemTotal)))
	fmt.Fprintf(tw, "  Disk free\t%s\t%s on %s\n", diskText(o), migrate.Bytes(int64(n.DiskAvail)), dash(n.DiskPath))
	tw.Flush()
	for _, l := range o.Listening {
		fmt.Fprintf(b, "  listening on old: %s\n", l)
	}
}

func diskText(h migrate.HostSummary) string {
	if h.DiskPath == "" {
		return "-"
	}
	return migrate.Bytes(int64(h.DiskAvail)) + " on " + h.DiskPath
}

func planMoveText(b *strings.Builder, m *migrate.MoveSection) {
	b.WriteString("\nWHAT WILL MOVE\n")
	if m == nil || !m.Measured {
		note := "not yet measured"
		if m != nil && m.Note != "" {
			note = m.Note
		}
		fmt.Fprintf(b, "  %s\n", note)
		return
	}
	tw := tabwriter.NewWriter(b, 0, 4, 2, ' ', tabwriter.AlignRight)
	for _, pt := range m.Parts {
		fmt.Fprintf(tw, "  %s\t%d files\t%s\t\n", pt.Kind, pt.Files, migrate.Bytes(pt.Bytes))
	}
	fmt.Fprintf(tw, "  total\t%d files\t%s\t\n", m.Files, migrate.Bytes(m.Bytes))
	tw.Flush()
	if m.TargetKnown {
		fmt.Fprintf(b, "  already on the target: %d files, %s\n", m.PresentFiles, migrate.Bytes(m.PresentBytes))
	} else if m.Note != "" {
		fmt.Fprintf(b, "  %s\n", m.Note)
	}
	mbit := m.Bandwidth * 8 / 1_000_000
	fmt.Fprintf(b, "  to send after dedupe: %s, about %s at %d Mbit/s\n", migrate.Bytes(m.BytesToSend), roundDur(m.EstTransfer), mbit)
	fmt.Fprintf(b, "  cutover: about %s (stop, final delta of %s changed in the last hour, start, health check)\n",
		roundDur(m.EstCutover), migrate.Bytes(m.ChangingBytes))
	if len(m.Packages) > 0 {
		fmt.Fprintf(b, "  packages: %s\n", strings.Join(m.Packages, ", "))
	}
	if len(m.Ports) > 0 {
		fmt.Fprintf(b, "  ports: %s\n", strings.Join(m.Ports, ", "))
	}
}

func roundDur(d time.Duration) string {
	if d < time.Second {
		return "<1s"
	}
	return d.Round(time.Second).String()
}

func planDNSText(b *strings.Builder, p *migrate.Plan) {
	d := p.DNS
	if d == nil {
		b.WriteString("\nDNS\n  not checked (no --domain)\n")
		return
	}
	fmt.Fprintf(b, "\nDNS (zone %s)\n", dash(strings.TrimSuffix(d.Zone, ".")))
	if d.Error != "" {
		fmt.Fprintf(b, "  check failed: %s\n", d.Error)
		return
	}
	for _, s := range d.Servers {
		state := fmt.Sprintf("serial %d", s.Serial)
		if s.Error != "" {
			state = "error: " + s.Error
		}
		name := s.Server
		if s.NSName != "" {
			name += " (" + strings.TrimSuffix(s.NSName, ".") + ")"
		}
		fmt.Fprintf(b, "  server %s: %s\n", name, state)
	}
	if d.Consistent {
		b.WriteString("  servers agree: yes\n")
	} else {
		b.WriteString("  servers agree: NO\n")
	}
	tw := tabwriter.NewWriter(b, 0, 4, 2, ' ', 0)
	for _, r := range d.Records {
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\n", r.Name, r.TTL, r.Type, r.Value)
	}
	tw.Flush()
	ts := func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") }
	if d.MaxTTL > d.LowTTL {
		fmt.Fprintf(b, "  lower the TTLs to %s now (%s); after %s caches hold at most %s of the old address\n",
			d.LowTTL, ts(d.LowerBy), ts(d.CutoverAfter), d.LowTTL)
	} else {
		fmt.Fprintf(b, "  TTLs are already short (%s): no need to lower them\n", d.MaxTTL)
	}
	fmt.Fprintf(b, "  earliest a switch can be complete: %s (a switch now, plus the longest TTL %s)\n", ts(d.EarliestComplete), d.MaxTTL)
	for _, m := range d.MXProbes {
		role := "primary"
		if m.Backup {
			role = "backup"
		}
		fmt.Fprintf(b, "  %s MX %d %s (%s): RCPT TO:<%s> %s (%s)\n", role, m.Pref, m.Host, dash(m.Addr), m.Rcpt, m.Result, m.Reply)
	}
}

// planTrafficText draws the hour histogram as one bar per hour.
func planTrafficText(b *strings.Builder, p *migrate.Plan, now time.Time) {
	t := p.Traffic
	b.WriteString("\nTRAFFIC BY HOUR OF DAY")
	if t == nil {
		b.WriteString("\n  not measured\n")
		return
	}
	fmt.Fprintf(b, " (%s", t.Path)
	if t.Format != "" {
		fmt.Fprintf(b, ", %s", t.Format)
	}
	if t.Zone != "" {
		fmt.Fprintf(b, ", times UTC%s", t.Zone)
	}
	b.WriteString(")\n")
	if t.QuietHour < 0 {
		fmt.Fprintf(b, "  %s\n", dash(t.Note))
		return
	}
	fmt.Fprintf(b, "  %d requests from %s to %s\n", t.Parsed, t.First.Format("2006-01-02 15:04"), t.Last.Format("2006-01-02 15:04"))
	peak := t.PerHour[t.PeakHour]
	for h := range 24 {
		mark := ""
		switch h {
		case t.QuietHour:
			mark = "  <- quietest"
		case t.PeakHour:
			mark = "  <- busiest"
		}
		if t.Covered[h] == 0 {
			fmt.Fprintf(b, "  %02d  %-30s  %8s\n", h, "", "no data")
			continue
		}
		fmt.Fprintf(b, "  %02d  %-30s  %8.1f/h%s\n", h, bar(t.PerHour[h], peak, 30), t.PerHour[h], mark)
	}
	next := migrate.NextHour(now, t.QuietHour, t.Zone)
	share := 0.0
	if t.Parsed > 0 {
		share = 100 * float64(t.Hours[t.QuietHour]) / float64(t.Parsed)
	}
	fmt.Fprintf(b, "  quietest hour: %02d:00-%02d:00 (UTC%s), %.1f%% of requests; next one starts %s\n",
		t.QuietHour, (t.QuietHour+1)%24, t.Zone, share, next.Format("2006-01-02 15:04 -07:00"))
	if t.Note != "" {
		fmt.Fprintf(b, "  note: %s\n", t.Note)
	}
	if t.Skipped > 0 {
		fmt.Fprintf(b, "  %d of %d lines did not parse\n", t.Skipped, t.Lines)
	}
}

// bar draws v relative to max as up to width block characters, with
// eighths for the last one.
func bar(v, max float64, width int) string {
	if max <= 0 || v <= 0 {
		return ""
	}
	eighths := int(v/max*float64(width*8) + 0.5)
	if eighths == 0 {
		eighths = 1
	}
	s := strings.Repeat("█", eighths/8)
	if r := eighths % 8; r > 0 {
		s += string([]rune("▏▎▍▌▋▊▉")[r-1])
	}
	return s
}

func planRisksText(b *strings.Builder, rs []migrate.Risk) {
	b.WriteString("\nRISKS\n")
	if len(rs) == 0 {
		b.WriteString("  none found\n")
		return
	}
	for _, r := range rs {
		fmt.Fprintf(b, "  [%s] %s (%s)\n", r.Severity, r.Title, r.ID)
		for _, l := range strings.Split(r.Detail, "\n") {
			if l != "" {
				fmt.Fprintf(b, "      %s\n", l)
			}
		}
		for i, l := range strings.Split(r.Fix, "\n") {
			if i == 0 {
				fmt.Fprintf(b, "    fix: %s\n", l)
			} else {
				fmt.Fprintf(b, "    %s\n", l)
			}
		}
	}
}
