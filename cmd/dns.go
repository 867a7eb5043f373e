package cmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/spf13/cobra"

	"github.com/migrate-tool/migrate/dnscheck"
	"github.com/migrate-tool/migrate/internal/hint"
)

func init() {
	register(func(f *Factory) *cobra.Command { return NewCmdDNS(f, nil) })
}

// DNSOptions are the flags shared by the `migrate dns` subcommands.
type DNSOptions struct {
	F              *Factory
	Op             string // lower-ttl, set, snapshot, restore
	Name           string
	Type           string
	Values         []string
	TTL            uint32
	Zone           string
	Server         string
	Auth           []string
	Resolvers      []string
	NSPort         int
	KeyFile        string
	Timeout        time.Duration
	ConfirmTimeout time.Duration
	NoConfirm      bool
	Record         string
	Dir            string
	Output         string
	RestoreNames   []string
	Arg            string // snapshot zone or restore file
}

// NewCmdDNS builds `migrate dns` and its subcommands.
func NewCmdDNS(f *Factory, runF func(*DNSOptions) error) *cobra.Command {
	opts := &DNSOptions{F: f}
	cmd := &cobra.Command{
		Use:   "dns",
		Short: "Change DNS records with TSIG-signed dynamic updates (lower-ttl, set, snapshot, restore)",
		Long: `Change a zone through RFC 2136 dynamic updates sent to its primary (the SOA MNAME,
or --server), signed with TSIG. The key comes from --tsig-key FILE (BIND key file,
or one line name:algorithm:secret) or $MIGRATE_TSIG_KEY, never from the command line.
Every update carries prerequisites: the records must still be what was read, so a
concurrent edit makes it fail with nothing changed. Before an update the records it
replaces are written to a change record (--record, default under --dir); after it the
change is confirmed on every authoritative server.`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&opts.Zone, "zone", "", "zone (default: from the name's SOA)")
	pf.StringVar(&opts.Server, "server", "", "primary ADDR[:PORT] to send updates and transfers to (default: SOA MNAME)")
	pf.StringArrayVar(&opts.Auth, "auth", nil, "authoritative server ADDR[:PORT] to confirm on (repeatable; default: the zone's NS)")
	pf.StringArrayVar(&opts.Resolvers, "resolver", nil, "resolver ADDR[:PORT] to find the zone, primary and NS")
	pf.IntVar(&opts.NSPort, "ns-port", 53, "port of servers found by name (SOA MNAME, NS)")
	pf.StringVar(&opts.KeyFile, "tsig-key", "", "TSIG key file (default: $"+dnscheck.KeyEnv+")")
	pf.DurationVar(&opts.Timeout, "timeout", dnscheck.DefaultTimeout, "per-message timeout")
	pf.DurationVar(&opts.ConfirmTimeout, "confirm-timeout", dnscheck.DefaultConfirmTimeout, "how long to wait for every server to serve a change")
	pf.BoolVar(&opts.NoConfirm, "no-confirm", false, "do not wait for the servers to serve the change")
	pf.StringVar(&opts.Record, "record", "", "write the change record here (default: a new file under --dir)")
	pf.StringVar(&opts.Dir, "dir", defaultDNSDir(), "directory for change records and snapshots")

	run := func(op string) func(*cobra.Command, []string) error {
		return func(c *cobra.Command, args []string) error {
			opts.Op = op
			if err := opts.parseArgs(args); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return dnsRun(c.Context(), opts)
		}
	}
	lower := &cobra.Command{Use: "lower-ttl NAME --ttl N", Short: "Lower the TTL of every record set at NAME to N seconds",
		Args: cobra.ExactArgs(1), RunE: run("lower-ttl"),
		Example: "  migrate dns lower-ttl www.example.test --ttl 60 --tsig-key /etc/bind/migrate.key"}
	set := &cobra.Command{Use: "set NAME A|AAAA|CNAME|MX|TXT VALUE...", Short: "Replace NAME's records of a type",
		Args: cobra.MinimumNArgs(3), RunE: run("set"),
		Example: "  migrate dns set www.example.test A 198.51.100.7 --ttl 60\n  migrate dns set example.test MX 10 mail1 20 mail2"}
	snap := &cobra.Command{Use: "snapshot ZONE [-o FILE]", Short: "Save the whole zone by AXFR (TSIG) as a zone file",
		Args: cobra.ExactArgs(1), RunE: run("snapshot")}
	restore := &cobra.Command{Use: "restore CHANGE-RECORD | SNAPSHOT --name NAME...", Short: "Put back what a change replaced (or NAME's records from a snapshot)",
		Args: cobra.ExactArgs(1), RunE: run("restore")}
	for _, c := range []*cobra.Command{lower, set} {
		c.Flags().Uint32Var(&opts.TTL, "ttl", 0, "TTL in seconds")
	}
	snap.Flags().StringVarP(&opts.Output, "output", "o", "", "zone file to write (default: ZONE-SERIAL.zone under --dir; - for stdout)")
	restore.Flags().StringArrayVar(&opts.RestoreNames, "name", nil, "with a snapshot: the name whose records to restore (repeatable)")
	cmd.AddCommand(lower, set, snap, restore)
	return cmd
}

func defaultDNSDir() string {
	if d := os.Getenv("MIGRATE_STATE_DIR"); d != "" {
		return filepath.Join(d, "dns")
	}
	return "/var/lib/migrate/dns"
}

func (o *DNSOptions) parseArgs(args []string) error {
	switch o.Op {
	case "lower-ttl":
		o.Name = args[0]
		if o.TTL == 0 {
			return usagef("--ttl must be at least 1 (seconds)")
		}
	case "set":
		o.Name, o.Type, o.Values = args[0], strings.ToUpper(args[1]), args[2:]
		switch o.Type {
		case "A", "AAAA", "CNAME", "MX", "TXT":
		default:
			return usagef("cannot set %s records: give A, AAAA, CNAME, MX or TXT", args[1])
		}
	default:
		o.Arg = args[0]
	}
	if o.Op != "snapshot" && o.Op != "restore" {
		if _, ok := dns.IsDomainName(o.Name); !ok {
			return usagef("bad name %q", o.Name)
		}
	}
	if o.Timeout <= 0 || o.ConfirmTimeout <= 0 {
		return usagef("--timeout and --confirm-timeout must be positive")
	}
	return nil
}

// key loads the TSIG key from --tsig-key or the environment.
func (o *DNSOptions) key() (*dnscheck.Key, error) {
	if o.KeyFile != "" {
		return dnscheck.LoadKey(o.KeyFile)
	}
	return dnscheck.KeyFromEnv()
}

func (o *DNSOptions) updater(key *dnscheck.Key, record string) *dnscheck.Updater {
	u := &dnscheck.Updater{Zone: o.Zone, Primary: o.Server, Auth: o.Auth, Resolvers: o.Resolvers, NSPort: o.NSPort,
		Key: key, Timeout: o.Timeout, ConfirmTimeout: o.ConfirmTimeout, RecordPath: record, Logger: o.F.Logger}
	if o.NoConfirm {
		u.ConfirmTimeout = -1
	}
	return u
}

func (o *DNSOptions) recordPath(name string) string {
	if o.Record != "" {
		return o.Record
	}
	stamp := time.Now().UTC().Format("20060102T150405.000Z")
	return filepath.Join(o.Dir, fmt.Sprintf("change-%s-%s-%s.json", strings.TrimSuffix(name, "."), o.Op, stamp))
}

func dnsRun(ctx context.Context, o *DNSOptions) error {
	key, err := o.key()
	if err != nil {
		return err
	}
	o.F.Logger.Debug("dns", "op", o.Op, "server", o.Server, "key", key)
	switch o.Op {
	case "snapshot":
		return dnsSnapshot(ctx, o, key)
	case "restore":
		return dnsRestore(ctx, o, key)
	}
	if key == nil {
		o.F.Logger.Warn("no TSIG key (--tsig-key or $" + dnscheck.KeyEnv + "): the update goes unsigned")
	}
	record := o.recordPath(o.Name)
	u := o.updater(key, record)
	var ch *dnscheck.Change
	if o.Op == "lower-ttl" {
		ch, err = u.LowerTTL(ctx, o.Name, o.TTL)
	} else {
		ch, err = u.Set(ctx, o.Name, o.Type, o.Values, o.TTL)
	}
	return printChange(o, ch, record, err)
}

func dnsRestore(ctx context.Context, o *DNSOptions, key *dnscheck.Key) error {
	b, err := os.ReadFile(o.Arg)
	if err != nil {
		return hint.With(fmt.Errorf("restore: %w", err), "give a change record written by `migrate dns set`/`lower-ttl`, or a snapshot with --name")
	}
	if strings.HasPrefix(strings.TrimSpace(string(b)), "{") {
		rec, err := dnscheck.ReadChange(o.Arg)
		if err != nil {
			return hint.With(err, "give a change record written by `migrate dns set` or `lower-ttl`")
		}
		record := o.recordPath(rec.Name)
		ch, err := o.updater(key, record).Restore(ctx, rec)
		return printChange(o, ch, record, err)
	}
	snap, err := dnscheck.ReadSnapshot(o.Arg)
	if err != nil {
		return hint.With(err, "give a change record or a zone file written by `migrate dns snapshot`")
	}
	if len(o.RestoreNames) == 0 {
		return usagef("restoring from a snapshot needs --name NAME (which records to put back)")
	}
	if len(o.RestoreNames) > 1 && o.Record != "" {
		return usagef("--record names one file: restore one --name at a time, or let --dir name the records")
	}
	if o.Zone == "" {
		o.Zone = snap.Zone
	}
	for _, name := range o.RestoreNames {
		record := o.recordPath(name)
		ch, err := o.updater(key, record).RestoreSets(ctx, name, snap.Sets(name))
		if err := printChange(o, ch, record, err); err != nil {
			return err
		}
	}
	return nil
}

func dnsSnapshot(ctx context.Context, o *DNSOptions, key *dnscheck.Key) error {
	zone := dns.Fqdn(o.Arg)
	server := o.Server
	if server == "" {
		u := o.updater(key, "")
		u.Zone = zone
		p, err := u.FindPrimary(ctx)
		if err != nil {
			return err
		}
		server = p
	}
	snap, err := dnscheck.Transfer(ctx, server, zone, key, o.Timeout)
	if err != nil {
		return err
	}
	out := o.Output
	switch out {
	case "-":
		_, err := snap.WriteTo(o.F.IO.Out)
		return err
	case "":
		out = filepath.Join(o.Dir, fmt.Sprintf("%s-%d.zone", strings.TrimSuffix(snap.Zone, "."), snap.Serial))
	}
	if err := snap.WriteFile(out); err != nil {
		return err
	}
	if o.F.JSON {
		return o.F.printJSON("snapshot", map[string]any{"zone": snap.Zone, "server": snap.Server, "serial": snap.Serial,
			"records": len(snap.Records), "file": out})
	}
	fmt.Fprintf(o.F.IO.Out, "zone %s serial %d: %d records from %s written to %s\n", snap.Zone, snap.Serial, len(snap.Records), snap.Server, out)
	return nil
}

// printChange prints a change (even a partly failed one) and passes err on.
func printChange(o *DNSOptions, ch *dnscheck.Change, record string, err error) error {
	if ch == nil {
		return err
	}
	if ch.Status == "unchanged" {
		record = ""
	}
	if o.F.JSON {
		o.F.printJSON("change", struct {
			*dnscheck.Change
			Record string `json:"record,omitempty"`
		}{ch, record})
		return err
	}
	printChangeText(o.F.IO.Out, ch, record)
	return err
}

func printChangeText(w io.Writer, ch *dnscheck.Change, record string) {
	if ch.Status == "unchanged" {
		fmt.Fprintf(w, "%s %s: nothing to change\n", ch.Op, ch.Name)
		return
	}
	fmt.Fprintf(w, "%s %s in %s at %s (key %s): serial %d -> %d\n", ch.Op, ch.Name, ch.Zone, ch.Primary, keyName(ch.KeyName), ch.SerialBefore, ch.SerialAfter)
	for i := range ch.New {
		fmt.Fprintf(w, "  %s  ->  %s\n", ch.Old[i], ch.New[i])
	}
	for _, s := range ch.Servers {
		if s.Confirmed {
			fmt.Fprintf(w, "  confirmed on %s: serial %d after %s\n", s.Server, s.Serial, s.At.Sub(ch.Applied).Round(time.Millisecond))
		} else {
			fmt.Fprintf(w, "  NOT confirmed on %s: %s\n", s.Server, s.Error)
		}
	}
	if ch.MaxOldTTL > 0 && !ch.CachesExpire.IsZero() {
		fmt.Fprintf(w, "  caches may hold the old answer until %s (old TTL %ds)\n", ch.CachesExpire.Format(time.RFC3339), ch.MaxOldTTL)
	}
	if record != "" {
		fmt.Fprintf(w, "  change record: %s\n", record)
	}
}

func keyName(k string) string {
	if k == "" {
		return "none"
	}
	return strings.TrimSuffix(k, ".")
}
