package cmd

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/migrate-tool/migrate/dnscheck"
	"github.com/migrate-tool/migrate/internal/hint"
	"github.com/migrate-tool/migrate/migrate"
)

func init() {
	register(func(f *Factory) *cobra.Command { return NewCmdCutover(f, nil) })
	register(func(f *Factory) *cobra.Command { return NewCmdRollback(f, nil) })
}

// CutoverOptions are the arguments of `migrate cutover`.
type CutoverOptions struct {
	F           *Factory
	Dir         string
	TSIGKey     string
	Dest        string
	HealthPath  string
	HoldTimeout time.Duration
	DNSTTL      uint32
	PrepareOnly bool
	Drill       string
	TLSCert     string
}

// NewCmdCutover builds `migrate cutover DIR`.
func NewCmdCutover(f *Factory, runF func(*CutoverOptions) error) *cobra.Command {
	opts := &CutoverOptions{F: f}
	cmd := &cobra.Command{
		Use:   "cutover DIR",
		Short: "Move the service of a planned migration to the new host, with no failed request",
		Long: `Perform the migration planned in DIR (see migrate plan), each step checked and
journalled in DIR/journal.ndjson:

  capture, transfer, start-new   (skipped when done earlier)
  preflight     the new service answers; the DNS key is accepted
  takeover      a holding proxy on the old host takes the service's listening
                socket over (it is never closed, so no connection is refused)
                and the old service stops gracefully; new connections wait
  final-sync    delta capture and transfer while the old service is stopped
  restart-new   restart on the new host and health-check it
  release       the held connections, and all that follow, go to the new host
  dns-switch    RFC 2136 updates signed with TSIG, confirmed on every server

If a step after the takeover fails, the old service is started again on the
held socket and DNS is restored. Run it again after a crash or Ctrl-C and it
continues from the journal.`,
		Example: `  migrate cutover web1
  migrate cutover web1 --tsig-key /etc/bind/migrate.key --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Dir = args[0]
			switch opts.Drill {
			case "", migrate.StepTakeover, migrate.StepFinalSync, migrate.StepRestart, migrate.StepRelease, migrate.StepDNS:
			default:
				return usagef("--drill %q: want takeover, final-sync, restart-new, release or dns-switch", opts.Drill)
			}
			if opts.HoldTimeout < 0 {
				return usagef("--hold-timeout must not be negative")
			}
			if runF != nil {
				return runF(opts)
			}
			return cutoverRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.TSIGKey, "tsig-key", "", "TSIG key file for DNS updates (default: the plan's, or $MIGRATE_TSIG_KEY)")
	fl.StringVar(&opts.Dest, "dest", "", "directory on the new host holding NAME/root (default /srv/migrate)")
	fl.StringVar(&opts.HealthPath, "health-path", "/", "path requested on the new host to check an HTTP service")
	fl.DurationVar(&opts.HoldTimeout, "hold-timeout", 60*time.Second, "forward held connections anyway after this long")
	fl.Uint32Var(&opts.DNSTTL, "dns-ttl", 0, "TTL of the new DNS records (default: the old TTL)")
	fl.StringVar(&opts.TLSCert, "tls-cert", "", "key and certificate PEM: terminate TLS on port 443 at the old host during the move (default: pass TLS through)")
	fl.BoolVar(&opts.PrepareOnly, "prepare-only", false, "only capture, transfer and start on the new host; switch nothing")
	fl.StringVar(&opts.Drill, "drill", "", "rehearse a rollback: make STEP (takeover, final-sync, restart-new, release or dns-switch) fail on purpose")
	return cmd
}

// loadKey finds the TSIG key: the flag, the plan's key file, or the
// environment. It returns nil when the plan switches no DNS.
func loadKey(flag string, p *migrate.Plan) (*dnscheck.Key, error) {
	if len(p.Domains) == 0 {
		return nil, nil
	}
	switch {
	case flag != "":
		return dnscheck.LoadKey(flag)
	case p.TSIGKeyFile != "":
		return dnscheck.LoadKey(p.TSIGKeyFile)
	case os.Getenv(dnscheck.KeyEnv) != "":
		return dnscheck.KeyFromEnv()
	}
	return nil, hint.With(fmt.Errorf("the plan switches DNS for %v but no TSIG key was given", p.Domains),
		"give --tsig-key FILE or set "+dnscheck.KeyEnv)
}

func (f *Factory) stepOptions(p *migrate.Plan, keyFile string) (migrate.Options, error) {
	key, err := loadKey(keyFile, p)
	if err != nil {
		return migrate.Options{}, err
	}
	return migrate.Options{OpenHost: f.OpenHost, Key: key, Logger: f.Logger, Events: f.printEvent}, nil
}

// printEvent shows step progress: NDJSON status records with --json, a
// line on stderr otherwise.
func (f *Factory) printEvent(e migrate.Event) {
	if f.JSON {
		f.printJSON("status", e)
		return
	}
	line := fmt.Sprintf("%-12s %s", e.Step, e.State)
	if e.Took > 0 {
		line += fmt.Sprintf(" (%s)", e.Took.Round(time.Millisecond))
	}
	if e.Detail != "" {
		line += ": " + e.Detail
	}
	fmt.Fprintln(f.IO.ErrOut, line)
}

func cutoverRun(ctx context.Context, opts *CutoverOptions) error {
	f := opts.F
	m, err := migrate.Open(opts.Dir)
	if err != nil {
		return err
	}
	defer m.Close()
	so, err := f.stepOptions(m.Plan, opts.TSIGKey)
	if err != nil {
		return err
	}
	so.Dest, so.HealthPath, so.HoldTimeout, so.DNSTTL, so.Drill = opts.Dest, opts.HealthPath, opts.HoldTimeout, opts.DNSTTL, opts.Drill
	if opts.TLSCert != "" {
		if so.TLSCert, err = readTLSCert(opts.TLSCert); err != nil {
			return err
		}
	}
	if opts.PrepareOnly {
		return migrate.Prepare(ctx, m, so)
	}
	res, err := migrate.Cutover(ctx, m, so)
	if res != nil {
		printCutover(f, m, res)
	}
	return err
}

func printCutover(f *Factory, m *migrate.Migration, r *migrate.CutoverResult) {
	if f.JSON {
		f.printJSON("summary", r)
		return
	}
	w := f.IO.Out
	if r.RolledBack {
		fmt.Fprintf(w, "cutover of %s failed and was rolled back: %s\n", m.Plan.Name, r.Error)
		return
	}
	fmt.Fprintf(w, "%s moved from %s to %s\n", m.Plan.Name, m.Plan.From, m.Plan.To)
	fmt.Fprintf(w, "  transfer:   %s sent of %s (%s saved)\n", migrate.Bytes(r.Transfer.Stats.BytesSent), migrate.Bytes(r.Transfer.Stats.BytesArchive), migrate.Bytes(r.Transfer.Stats.BytesSaved))
	fmt.Fprintf(w, "  final sync: %d files, %s sent\n", r.FinalSync.Stats.FilesSent, migrate.Bytes(r.FinalSync.Stats.BytesSent))
	fmt.Fprintf(w, "  hold:       connections to %s waited at most %s\n", r.Proxy.Listen, r.HoldTime.Round(time.Millisecond))
	fmt.Fprintf(w, "  proxy:      %s forwards to %s (pid %d, log %s)\n", r.Proxy.Listen, r.Proxy.Backend, r.Proxy.PID, r.Proxy.AccessLog)
	if r.DNS != nil {
		fmt.Fprintf(w, "  dns:        %v → %s; caches may hold the old answer until %s\n", r.DNS.Names, r.DNS.NewAddr, r.DNS.CachesExpire.Format(time.RFC3339))
	}
	fmt.Fprintf(w, "next: migrate drain %s --watch\n", m.Dir)
}

// RollbackOptions are the arguments of `migrate rollback`.
type RollbackOptions struct {
	F       *Factory
	Dir     string
	TSIGKey string
}

// NewCmdRollback builds `migrate rollback DIR`.
func NewCmdRollback(f *Factory, runF func(*RollbackOptions) error) *cobra.Command {
	opts := &RollbackOptions{F: f}
	cmd := &cobra.Command{
		Use:   "rollback DIR",
		Short: "Put the old host back in service: restore DNS and restart the old service on its held address",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Dir = args[0]
			if runF != nil {
				return runF(opts)
			}
			m, err := migrate.Open(opts.Dir)
			if err != nil {
				return err
			}
			defer m.Close()
			so, err := f.stepOptions(m.Plan, opts.TSIGKey)
			if err != nil {
				return err
			}
			return migrate.Rollback(cmd.Context(), m, so)
		},
	}
	cmd.Flags().StringVar(&opts.TSIGKey, "tsig-key", "", "TSIG key file for DNS updates (default: the plan's, or $MIGRATE_TSIG_KEY)")
	return cmd
}

// readTLSCert reads a PEM file holding a private key and its certificate
// chain, and checks that they belong together.
func readTLSCert(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert: %w", err)
	}
	if _, err := tls.X509KeyPair(b, b); err != nil {
		return nil, hint.With(fmt.Errorf("--tls-cert %s: %w", path, err), "the file must hold the private key and the certificate chain, PEM encoded")
	}
	return b, nil
}

// isMigrationDir reports whether dir holds a migration's plan.
func isMigrationDir(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, migrate.PlanFile))
	return err == nil
}

// migrationStepRun runs the capture or transfer step of the migration in
// dir (`migrate capture DIR`, `migrate transfer DIR`).
func migrationStepRun(ctx context.Context, f *Factory, dir, step string) error {
	m, err := migrate.Open(dir)
	if err != nil {
		return err
	}
	defer m.Close()
	so := migrate.Options{OpenHost: f.OpenHost, Logger: f.Logger, Events: f.printEvent}
	var res any
	switch step {
	case migrate.StepCapture:
		res, err = migrate.Capture(ctx, m, so)
	default:
		res, err = migrate.Transfer(ctx, m, so)
	}
	if err != nil {
		return err
	}
	if f.JSON {
		return f.printJSON("summary", res)
	}
	switch r := res.(type) {
	case migrate.CaptureResult:
		fmt.Fprintf(f.IO.Out, "captured %s: %d files, %s, in %s\n", m.Plan.Service, r.Summary.Files, migrate.Bytes(r.Summary.Bytes), m.Path(r.Archive))
	case migrate.TransferResult:
		st := r.Stats
		fmt.Fprintf(f.IO.Out, "shipped to %s: %s sent of %s (%s saved), root %s\n", m.Plan.To, migrate.Bytes(st.BytesSent), migrate.Bytes(st.BytesArchive), migrate.Bytes(st.BytesSaved), st.Root)
	}
	fmt.Fprintf(f.IO.Out, "next: migrate cutover %s\n", dir)
	return nil
}
