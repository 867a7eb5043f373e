package cmd

import (
	"context"
	"errors"
	"fmt"
	"github.com/migrate-tool/migrate/migrate"

	"github.com/spf13/cobra"

	"github.com/migrate-tool/migrate/capture"
	"github.com/migrate-tool/migrate/internal/hint"
)

func init() {
	register(func(f *Factory) *cobra.Command { return NewCmdArchive(f, nil) })
}

// ArchiveOptions are the arguments of `migrate archive verify|list`.
type ArchiveOptions struct {
	F    *Factory
	Verb string
	File string
}

// NewCmdArchive builds `migrate archive` with its verify and list verbs.
func NewCmdArchive(f *Factory, runF func(*ArchiveOptions) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "archive",
		Short: "Inspect capture archives: verify checksums, list contents",
	}
	verb := func(use, short string, aliases ...string) *cobra.Command {
		return &cobra.Command{
			Use: use + " FILE", Short: short, Aliases: aliases,
			Args: func(cmd *cobra.Command, args []string) error {
				if len(args) != 1 {
					return usagef("archive %s takes one FILE", use)
				}
				return nil
			},
			RunE: func(cmd *cobra.Command, args []string) error {
				opts := &ArchiveOptions{F: f, Verb: use, File: args[0]}
				if runF != nil {
					return runF(opts)
				}
				return archiveRun(cmd.Context(), opts)
			},
		}
	}
	cmd.AddCommand(verb("verify", "Check every entry's size and sha256; name the first bad entry"),
		verb("list", "List entries with type, mode, owner, size and origin", "ls"))
	return cmd
}

func archiveRun(ctx context.Context, opts *ArchiveOptions) error {
	f := opts.F
	r, err := capture.OpenArchive(opts.File)
	if err != nil {
		return archiveError(err)
	}
	m := r.Manifest()
	if opts.Verb == "list" {
		if f.JSON {
			return printEntriesJSON(f, m)
		}
		return printEntries(f.IO.Out, m)
	}
	if err := r.Verify(); err != nil {
		return archiveError(err)
	}
	sum := capture.Summarize(m)
	if f.JSON {
		return f.printJSON("summary", map[string]any{"file": opts.File, "ok": true, "kind": m.Kind, "service": m.Service,
			"entries": sum.Entries, "files": sum.Files, "bytes": sum.Bytes})
	}
	fmt.Fprintf(f.IO.Out, "ok %s: %s %s from %s, %d entries, %d files, %s verified\n",
		opts.File, m.Kind, m.Service, m.Host, sum.Entries, sum.Files, migrate.Bytes(sum.Bytes))
	return nil
}

func archiveError(err error) error {
	var pe *capture.ParseError
	if errors.As(err, &pe) {
		if pe.Entry != "" {
			return hint.With(err, fmt.Sprintf("the archive is damaged from entry %s on; capture the service again", pe.Entry))
		}
		return hint.With(err, "this is not an intact migrate capture archive; capture the service again")
	}
	return err
}
