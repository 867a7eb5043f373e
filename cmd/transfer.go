package cmd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/migrate-tool/migrate/capture"
	"github.com/migrate-tool/migrate/internal/host"
	"github.com/migrate-tool/migrate/migrate"
	"github.com/migrate-tool/migrate/transfer"
)

func init() {
	register(func(f *Factory) *cobra.Command { return NewCmdTransfer(f, nil) })
}

// TransferOptions are the arguments of `migrate transfer`.
type TransferOptions struct {
	F       *Factory
	Archive string
	From    string // capture from this host instead of reading Archive
	Service string // with From: the service to capture
	To      string
	Name    string
	Dest    string
	NoReuse bool
}

// NewCmdTransfer builds `migrate transfer`.
func NewCmdTransfer(f *Factory, runF func(*TransferOptions) error) *cobra.Command {
	opts := &TransferOptions{F: f}
	cmd := &cobra.Command{
		Use:   "transfer {ARCHIVE | --from OLD --service NAME} --to HOST | transfer DIR",
		Short: "Ship a capture archive into a chroot on the target host, sending only what it lacks",
		Long: `Ship a capture archive into DEST/NAME/root on HOST (default /srv/migrate/NAME/root)
through the agent over one SSH connection. The target first reports which
files it already holds byte for byte (in the root from an interrupted run, at
the same path on its own /, or with the same sha256 in another shipped root);
those are copied there, the rest is sent as one zstd-compressed stream. Every
file is checked against its sha256 on the target and renamed into place only
then; the root is marked complete only after all of them verified. Run the
same command again after an interruption: only what is missing is sent.
A delta archive (capture --since) applies on top of the complete root.
With --from OLD --service NAME the service is captured first (as migrate
capture does) into a temporary archive that is removed afterwards.
With a migration directory DIR (see migrate plan), the journalled transfer
step of that migration runs, capturing first if needed.`,
		Example: `  migrate transfer nginx.tar.zst --to ssh://root@10.231.0.2
  migrate transfer dns.tar.zst --to new1 --name dns --dest /var/lib/chroots
  migrate transfer nginx-delta.tar.zst --to new1 --json
  migrate transfer --from ssh://root@10.231.0.1 --service nginx --to ssh://root@10.231.0.2`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 && opts.To == "" && opts.From == "" && isMigrationDir(args[0]) {
				return migrationStepRun(cmd.Context(), f, args[0], migrate.StepTransfer)
			}
			switch {
			case opts.From != "" && len(args) > 0:
				return usagef("give either ARCHIVE or --from HOST, not both")
			case opts.From != "" && opts.Service == "":
				return usagef("--from needs --service NAME")
			case opts.From == "" && len(args) == 0:
				return usagef("give the ARCHIVE to ship, or --from HOST --service NAME")
			case opts.From == "" && opts.Service != "":
				return usagef("--service is for --from; an archive names its service itself")
			case opts.From != "":
				if _, err := host.ParseSpec(opts.From); err != nil {
					return usagef("%v", err)
				}
			default:
				opts.Archive = args[0]
			}
			if opts.To == "" {
				return usagef("--to HOST is required")
			}
			if _, err := host.ParseSpec(opts.To); err != nil {
				return usagef("%v", err)
			}
			if _, err := transfer.NewLayout(opts.Dest, transferNameOr(opts.Name)); err != nil {
				return usagef("%v", err)
			}
			if runF != nil {
				return runF(opts)
			}
			return transferRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.To, "to", "", "target host (local, user@host[:port], ssh://user@host:port)")
	fl.StringVar(&opts.From, "from", "", "capture the service on this host first instead of reading an archive")
	fl.StringVar(&opts.Service, "service", "", "with --from: the service to capture (as for migrate capture)")
	fl.StringVar(&opts.Name, "name", "", "service name on the target (default: the archive's service)")
	fl.StringVar(&opts.Dest, "dest", transfer.DefaultDest, "directory on the target holding NAME/root")
	fl.BoolVar(&opts.NoReuse, "no-reuse", false, "send every file, even those the target already holds")
	return cmd
}

// transferNameOr returns a valid placeholder name for checking --dest when --name
// is left to the archive.
func transferNameOr(n string) string {
	if n == "" {
		return "x"
	}
	return n
}

func transferRun(ctx context.Context, opts *TransferOptions) error {
	f := opts.F
	if opts.From != "" {
		dir, err := os.MkdirTemp("", "migrate-transfer-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if opts.Archive, err = captureTo(ctx, f, opts.From, opts.Service, dir); err != nil {
			return err
		}
	}
	h, err := f.OpenHost(ctx, opts.To)
	if err != nil {
		return err
	}
	defer h.Close()
	pr := newTransferProgress(f)
	st, err := transfer.Ship(ctx, h, opts.Archive, transfer.Options{
		Name: opts.Name, Dest: opts.Dest, NoReuse: opts.NoReuse, Logger: f.Logger, Progress: pr.update,
	})
	pr.finish()
	if err != nil {
		return err
	}
	if f.JSON {
		return f.printJSON("summary", st)
	}
	saved := 0.0
	if st.BytesArchive > 0 {
		saved = 100 * float64(st.BytesSaved) / float64(st.BytesArchive)
	}
	what := "shipped"
	if st.AlreadyComplete {
		what = "already complete:"
	}
	fmt.Fprintf(f.IO.Out, "%s %s to %s:%s\n", what, st.Name, opts.To, st.Root)
	fmt.Fprintf(f.IO.Out, "files %d, sent %d (%d resent)\n", st.Files, st.FilesSent, len(st.Resent))
	fmt.Fprintf(f.IO.Out, "archive %s, sent %s, saved %s (%.0f%%; %s already in the root, %s reused from the target)\n",
		migrate.Bytes(st.BytesArchive), migrate.Bytes(st.BytesSent), migrate.Bytes(st.BytesSaved), saved, migrate.Bytes(st.BytesPresent), migrate.Bytes(st.BytesReused))
	fmt.Fprintf(f.IO.Out, "took %s\n", st.Duration.Round(time.Millisecond))
	return nil
}

// captureTo captures service on from into an archive in dir.
func captureTo(ctx context.Context, f *Factory, from, service, dir string) (string, error) {
	arch := filepath.Join(dir, "capture.tar.zst")
	p := capture.RunParams{Options: capture.Options{Service: service, Trace: capture.TraceAuto}}
	if from == "local" {
		p.Output = arch
	} else {
		p.Host = from
	}
	h, err := f.OpenHost(ctx, from)
	if err != nil {
		return "", err
	}
	defer h.Close()
	res, err := capture.Fetch(ctx, h, p, arch)
	if err != nil {
		return "", fmt.Errorf("capture %s on %s: %w", service, from, err)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(f.IO.ErrOut, "migrate: note: %s\n", n)
	}
	return arch, nil
}

// transferProgress shows a progress bar on a terminal, or NDJSON status
// records with --json (at most one a second).
type transferProgress struct {
	f    *Factory
	bar  *progressbar.ProgressBar
	last time.Time
}

func newTransferProgress(f *Factory) *transferProgress {
	return &transferProgress{f: f}
}

func (p *transferProgress) update(pr transfer.Progress) {
	if p.f.JSON {
		if pr.Final || time.Since(p.last) >= time.Second {
			p.last = time.Now()
			_ = p.f.printJSON("status", map[string]any{"phase": "send", "done": pr.Done, "total": pr.Total, "bytes_sent": pr.Sent})
		}
		return
	}
	errf, ok := p.f.IO.ErrOut.(*os.File)
	if !ok || !term.IsTerminal(int(errf.Fd())) {
		return
	}
	if p.bar == nil || pr.Total != p.bar.GetMax64() {
		p.bar = progressbar.NewOptions64(pr.Total, progressbar.OptionSetWriter(errf), progressbar.OptionShowBytes(true), progressbar.OptionShowCount(),
			progressbar.OptionSetDescription("sending"), progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionShowElapsedTimeOnFinish(), progressbar.OptionClearOnFinish())
	}
	_ = p.bar.Set64(pr.Done)
}

func (p *transferProgress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}
