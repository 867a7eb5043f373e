package cmd

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/migrate-tool/migrate/migrate"
)

func init() {
	register(func(f *Factory) *cobra.Command { return NewCmdStatus(f, nil) })
}

// StatusOptions are the arguments of `migrate status`.
type StatusOptions struct {
	F   *Factory
	Dir string
}

// NewCmdStatus builds `migrate status N`.
func NewCmdStatus(f *Factory, runF func(*StatusOptions) error) *cobra.Command {
	opts := &StatusOptions{F: f}
	return &cobra.Command{
		Use:   "status N",
		Short: "Show a migration's plan and the state of every step",
		Long: `Show the plan summary of migration directory N and the latest state of every
step recorded in its journal (started, done, failed, undone), with the time
and the error of a failed step, and the command that continues it. It reads
the directory without locking it, so it works while a cutover or a drain runs.`,
		Example: `  migrate status web
  migrate status --json web | jq -r 'select(.type=="step") | [.step, .state] | @tsv'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Dir = args[0]
			if runF != nil {
				return runF(opts)
			}
			return statusRun(cmd.Context(), opts)
		},
	}
}

func statusRun(_ context.Context, opts *StatusOptions) error {
	f := opts.F
	st, err := migrate.ReadStatus(opts.Dir)
	if err != nil {
		return err
	}
	if f.JSON {
		p := st.Plan
		if err := f.printJSON("status", statusJSON{Dir: st.Dir, Name: p.Name, Service: p.Service, From: p.From, To: p.To,
			Domains: p.Domains, Created: p.Created.UTC().Format("2006-01-02T15:04:05Z"), Risks: len(p.Risks), Next: st.Next}); err != nil {
			return err
		}
		for _, s := range st.Steps {
			if err := f.printJSON("step", s); err != nil {
				return err
			}
		}
		return nil
	}
	return printStatusText(f.IO.Out, st)
}

type statusJSON struct {
	Dir     string   `json:"dir"`
	Name    string   `json:"name"`
	Service string   `json:"service"`
	From    string   `json:"from"`
	To      string   `json:"to"`
	Domains []string `json:"domains,omitempty"`
	Created string   `json:"created"`
	Risks   int      `json:"risks"`
	Next    string   `json:"next,omitempty"`
}

func printStatusText(w io.Writer, st *migrate.Status) error {
	var b strings.Builder
	p := st.Plan
	fmt.Fprintf(&b, "Migration %q (%s): %s from %s to %s\n", p.Name, st.Dir, p.Service, p.From, p.To)
	fmt.Fprintf(&b, "Planned %s", p.Created.UTC().Format("2006-01-02 15:04:05Z"))
	if len(p.Domains) > 0 {
		fmt.Fprintf(&b, "; names %s", strings.Join(p.Domains, ", "))
	}
	if p.Move != nil && p.Move.Measured {
		fmt.Fprintf(&b, "; %d files, %s to send", p.Move.Files, migrate.Bytes(p.Move.BytesToSend))
	}
	if p.Traffic != nil && p.Traffic.QuietHour >= 0 {
		fmt.Fprintf(&b, "; quietest hour %02d:00 (UTC%s)", p.Traffic.QuietHour, p.Traffic.Zone)
	}
	fmt.Fprintf(&b, "; %d risk(s)\n\n", len(p.Risks))
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tSTATE\tTIME\tERROR")
	for _, s := range st.Steps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Step, s.State, s.Time.UTC().Format("2006-01-02 15:04:05Z"), s.Error)
	}
	tw.Flush()
	if st.Next != "" {
		fmt.Fprintf(&b, "\nNext: %s\n", st.Next)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
