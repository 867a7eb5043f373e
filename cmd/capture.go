package cmd

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/migrate-tool/migrate/capture"
	"github.com/migrate-tool/migrate/internal/hint"
	"github.com/migrate-tool/migrate/internal/host"
	"github.com/migrate-tool/migrate/migrate"
)

func init() {
	register(func(f *Factory) *cobra.Command { return NewCmdCapture(f, nil) })
}

// CaptureOptions are the arguments of `migrate capture`.
type CaptureOptions struct {
	F        *Factory
	From     string
	Service  string
	Port     int
	Output   string
	Since    string
	WithLogs bool
	DryRun   bool
	Include  []string
	Exclude  []string
	Trace    string
}

// NewCmdCapture builds `migrate capture`.
func NewCmdCapture(f *Factory, runF func(*CaptureOptions) error) *cobra.Command {
	opts := &CaptureOptions{F: f}
	cmd := &cobra.Command{
		Use:   "capture --from HOST --service NAME -o FILE | capture DIR",
		Short: "Capture a running service (packages, changed config, libraries, traced start-up, data) into one archive",
		Long: `Capture one running service on HOST into a zstd-compressed tar archive with a
versioned manifest (docs/archive-format.md), from which it can be rebuilt in a
chroot elsewhere. The service is named by --service (profile nginx, bind9,
postfix, apache2; or a process, package or init-script name) or by --port.
Collected: the service's package files, changed conffiles and admin-added
files in its config trees, the shared-library closure read from ELF headers,
files mapped by the live process, what a traced start-up (strace, in
throwaway namespaces over an overlay) executes and opens, and the data its
configuration names. Logs only with --with-logs. --since PREV writes a delta
against an earlier capture. See docs/capture.md.`,
		Example: `  migrate capture --from local --service nginx -o nginx.tar.zst
  migrate capture --from ssh://root@10.231.0.1 --port 53 -o dns.tar.zst
  migrate capture --from web1 --service nginx --since nginx.tar.zst -o nginx-delta.tar.zst
  migrate capture --from local --service postfix --dry-run`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if !isMigrationDir(args[0]) {
					return usagef("%s is not a migration directory (see migrate plan); to capture into a file use --from HOST --service NAME -o FILE", args[0])
				}
				return migrationStepRun(cmd.Context(), f, args[0], migrate.StepCapture)
			}
			if opts.Service == "" && opts.Port == 0 {
				return usagef("name the service with --service NAME or --port N")
			}
			if opts.Port < 0 || opts.Port > 65535 {
				return usagef("--port %d is not a port number", opts.Port)
			}
			if opts.Output == "" && !opts.DryRun {
				return usagef("-o/--output FILE is required (or use --dry-run)")
			}
			switch opts.Trace {
			case "auto", "off", "require":
			default:
				return usagef("--trace must be auto, off or require, not %q", opts.Trace)
			}
			for _, p := range opts.Include {
				if !strings.HasPrefix(p, "/") {
					return usagef("--include %s: give an absolute path on the source host", p)
				}
			}
			if _, err := host.ParseSpec(opts.From); err != nil {
				return usagef("%v", err)
			}
			if runF != nil {
				return runF(opts)
			}
			return captureRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.From, "from", "local", "host running the service: local, [user@]host[:port] or ssh://...")
	fl.StringVarP(&opts.Service, "service", "s", "", "service: profile (nginx, bind9, postfix, apache2), process, package or init script name")
	fl.IntVar(&opts.Port, "port", 0, "identify the service by a port it listens on")
	fl.StringVarP(&opts.Output, "output", "o", "", "archive file to write (created only when complete)")
	fl.StringVar(&opts.Since, "since", "", "earlier archive (or manifest.json): write a delta against it")
	fl.BoolVar(&opts.WithLogs, "with-logs", false, "include the service's log files")
	fl.BoolVar(&opts.DryRun, "dry-run", false, "show what would be captured, write nothing")
	fl.StringArrayVar(&opts.Include, "include", nil, "also capture this path (directories recursively; repeatable)")
	fl.StringArrayVar(&opts.Exclude, "exclude", nil, "leave out paths matching this glob or under this prefix (repeatable)")
	fl.StringVar(&opts.Trace, "trace", "auto", "trace the start-up: auto (when root and strace allow), off, require")
	return cmd
}

func captureRun(ctx context.Context, opts *CaptureOptions) error {
	f := opts.F
	p := capture.RunParams{DryRun: opts.DryRun, Options: capture.Options{Service: opts.Service, Port: opts.Port,
		WithLogs: opts.WithLogs, Include: opts.Include, Exclude: opts.Exclude, Trace: traceMode(opts.Trace)}}
	if opts.From != "local" {
		p.Host = opts.From
	}
	if opts.Since != "" {
		base, err := capture.ReadBase(opts.Since)
		if err != nil {
			return hint.With(fmt.Errorf("read --since %s: %w", opts.Since, err), "give the archive of an earlier full capture")
		}
		if base.Kind != capture.KindFull {
			return hint.With(fmt.Errorf("--since %s is a %s capture", opts.Since, base.Kind),
				"give the last full capture; deltas are always taken against a full one")
		}
		p.Since = base
	}
	if opts.Output != "" {
		abs, err := filepath.Abs(opts.Output)
		if err != nil {
			return err
		}
		opts.Output = abs
		if opts.From == "local" {
			p.Output = abs
		}
	}
	h, err := f.OpenHost(ctx, opts.From)
	if err != nil {
		return err
	}
	defer h.Close()
	f.Logger.Debug("capturing", "host", opts.From, "service", opts.Service, "port", opts.Port)
	res, err := capture.Fetch(ctx, h, p, opts.Output)
	if err != nil {
		return err
	}
	for _, n := range res.Notes {
		fmt.Fprintf(f.IO.ErrOut, "migrate: note: %s\n", n)
	}
	if opts.DryRun {
		if f.JSON {
			return printEntriesJSON(f, res.Manifest)
		}
		return printEntries(f.IO.Out, res.Manifest)
	}
	if f.JSON {
		res.Manifest = nil
		return f.printJSON("summary", struct {
			*capture.RunResult
			Output string `json:"output"`
		}{res, opts.Output})
	}
	fmt.Fprintf(f.IO.Out, "captured %s (%s) from %s: %d entries, %d files, %s, %d packages -> %s\n",
		res.Service, res.Kind, opts.From, res.Entries, res.Files, migrate.Bytes(res.Bytes), res.Packages, opts.Output)
	return nil
}

func traceMode(s string) string {
	if s == "auto" {
		return capture.TraceAuto
	}
	return s
}

// printEntries prints a manifest's entries as a table: type, mode, owner,
// size, path (with link target) and origin.
func printEntries(w io.Writer, m *capture.Manifest) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TYPE\tMODE\tOWNER\tSIZE\tPATH\tORIGIN")
	for _, e := range m.Entries {
		p := e.Path
		if e.Link != "" {
			arrow := " -> "
			if e.Type == capture.TypeHardlink {
				arrow = " => "
			}
			p += arrow + e.Link
		}
		origin := strings.Join(e.Reasons, ",")
		if e.Package != "" && !strings.Contains(origin, "package:"+e.Package) {
			origin += " [" + e.Package + "]"
		}
		size := "-"
		if e.Type == capture.TypeFile {
			size = fmt.Sprint(e.Size)
		}
		fmt.Fprintf(tw, "%s\t%04o\t%s:%s\t%s\t%s\t%s\n", e.Type, e.Mode, nameOr(e.User, e.UID), nameOr(e.Group, e.GID), size, p, origin)
	}
	for _, d := range m.Deleted {
		fmt.Fprintf(tw, "deleted\t-\t-\t-\t%s\t\n", d)
	}
	return tw.Flush()
}

func nameOr(name string, id int) string {
	if name != "" {
		return name
	}
	return fmt.Sprint(id)
}

func printEntriesJSON(f *Factory, m *capture.Manifest) error {
	for i := range m.Entries { // nested: the entry's own "type" (file, dir, ...) stays intact
		if err := f.printJSON("entry", map[string]any{"entry": &m.Entries[i]}); err != nil {
			return err
		}
	}
	for _, d := range m.Deleted {
		if err := f.printJSON("deleted", map[string]string{"path": d}); err != nil {
			return err
		}
	}
	return nil
}
