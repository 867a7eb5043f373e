package cmd

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/migrate-tool/migrate/internal/hint"
	"github.com/migrate-tool/migrate/migrate"
)

func init() { register(func(f *Factory) *cobra.Command { return NewCmdDemo(f, nil) }) }

// DemoOptions are the arguments of `migrate demo`.
type DemoOptions struct {
	F    *Factory
	Rate int
}

// NewCmdDemo builds `migrate demo`.
func NewCmdDemo(f *Factory, runF func(*DemoOptions) error) *cobra.Command {
	opts := &DemoOptions{F: f}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Move a web site between two hosts of a local test bed, under load, and show what happened",
		Long: `Build a local test bed (hosts old, new and client as network namespaces, OpenSSH
on old and new, BIND 9 primary and secondary for example.test), run nginx with
a small site on old, and move it to new while a load runs against it:
plan, capture, transfer, cutover (DNS switched with TSIG), drain. It ends with
a table of requests served and failed, bytes sent and saved, and durations,
and tears everything down. Needs root and the packages scripts/install.sh
installs; it touches nothing outside the namespaces it creates.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Rate < 1 || opts.Rate > 2000 {
				return usagef("--rate must be between 1 and 2000 requests per second")
			}
			if runF != nil {
				return runF(opts)
			}
			return demoRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().IntVar(&opts.Rate, "rate", 200, "requests per second of the load during the move")
	return cmd
}

func demoRun(ctx context.Context, opts *DemoOptions) error {
	f := opts.F
	if os.Geteuid() != 0 {
		return hint.With(fmt.Errorf("the demo needs root: it creates network namespaces"), "run it with sudo")
	}
	o := migrate.DemoOptions{Rate: opts.Rate, Events: f.printEvent, Logger: f.Logger}
	if !f.JSON {
		o.Plan = func(dir string, p *migrate.Plan) { printPlanText(f.IO.ErrOut, dir, p, time.Now()) }
		o.Drain = func(c *migrate.DrainCheck) { fmt.Fprintln(f.IO.ErrOut, "drain        "+drainLine(c)) }
	}
	sum, err := migrate.Demo(ctx, o)
	if sum != nil {
		if f.JSON {
			f.printJSON("summary", sum)
		} else {
			printDemo(f, sum)
		}
	}
	if err != nil {
		return err
	}
	if sum.RequestsFailed > 0 {
		return hint.WithExit(fmt.Errorf("%d of %d requests failed during the move: %v", sum.RequestsFailed, sum.RequestsOK+sum.RequestsFailed, migrate.ErrDemoFailedRequests), hint.ExitFailed)
	}
	return nil
}

func printDemo(f *Factory, s *migrate.DemoSummary) {
	w := tabwriter.NewWriter(f.IO.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "\nmoved www.example.test (nginx) from %s to %s\n\n", s.Old, s.New)
	fmt.Fprintf(w, "requests served\t%d\n", s.RequestsOK)
	fmt.Fprintf(w, "requests failed\t%d\n", s.RequestsFailed)
	fmt.Fprintf(w, "latency p50 / p99 / max\t%s / %s / %s\n", s.P50.Round(time.Microsecond), s.P99.Round(time.Microsecond), s.MaxLatency.Round(time.Millisecond))
	fmt.Fprintf(w, "clients held during the switch\t%s\n", s.HoldTime.Round(time.Millisecond))
	fmt.Fprintf(w, "bytes in the archive\t%s\n", migrate.Bytes(s.BytesArchive))
	fmt.Fprintf(w, "bytes sent\t%s (saved %s: the new host already had them)\n", migrate.Bytes(s.BytesSent), migrate.Bytes(s.BytesSaved))
	fmt.Fprintf(w, "final sync sent\t%s\n", migrate.Bytes(s.FinalSyncBytes))
	if s.QuietHour >= 0 {
		fmt.Fprintf(w, "quietest hour (from the access log)\t%02d:00\n", s.QuietHour)
	}
	fmt.Fprintf(w, "dns switched\t%v\n", s.DNSSwitched)
	fmt.Fprintf(w, "drained\t%v\n", s.Drained)
	for _, d := range s.Durations {
		fmt.Fprintf(w, "  %s\t%s\n", d.Step, d.Took.Round(time.Millisecond))
	}
	fmt.Fprintf(w, "total\t%s\n", s.Total.Round(time.Millisecond))
	w.Flush()
}
