package cmd

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/migrate-tool/migrate/internal/facts"
	"github.com/migrate-tool/migrate/internal/hint"
	"github.com/migrate-tool/migrate/internal/host"
)

func init() {
	register(func(f *Factory) *cobra.Command { return NewCmdFacts(f, nil) })
}

// FactsOptions are the arguments of `migrate facts`.
type FactsOptions struct {
	F     *Factory
	Hosts []string
}

// NewCmdFacts builds `migrate facts HOST...`.
func NewCmdFacts(f *Factory, runF func(*FactsOptions) error) *cobra.Command {
	opts := &FactsOptions{F: f}
	cmd := &cobra.Command{
		Use:   "facts HOST...",
		Short: "Describe hosts: OS, kernel, resources, disks, init, and every listening socket with its process and package",
		Long: `Collect facts about each HOST through the migrate agent: hostname, OS release,
kernel, architecture, CPUs, memory, free disk per mount, package manager, init
system, and every listening TCP/UDP socket with its process, executable and
owning package. HOST is "local", [user@]host[:port] or ssh://[user@]host[:port];
~/.ssh/config, ssh-agent and known_hosts are honoured (see docs/hosts.md).
Hosts are queried concurrently. Exit 0 when all succeed, 3 when some fail, 1
when all fail.`,
		Example: `  migrate facts local
  migrate facts ssh://root@10.231.0.1 root@10.231.0.2 --known-hosts ./known_hosts -i ./id_ed25519
  migrate facts --json web1 web2 | jq -r '.sockets[] | [.port, .package] | @tsv'`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Hosts = args
			for _, h := range args {
				if _, err := host.ParseSpec(h); err != nil {
					return usagef("%v", err)
				}
			}
			if runF != nil {
				return runF(opts)
			}
			return factsRun(cmd.Context(), opts)
		},
	}
	return cmd
}

type factsResult struct {
	facts *facts.Facts
	err   error
}

// maxFactsParallel bounds how many hosts are queried at once.
const maxFactsParallel = 16

func factsRun(ctx context.Context, opts *FactsOptions) error {
	f := opts.F
	results := make([]chan factsResult, len(opts.Hosts))
	sem := make(chan struct{}, maxFactsParallel)
	for i, spec := range opts.Hosts {
		results[i] = make(chan factsResult, 1)
		go func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			fa, err := collectFacts(ctx, f, spec)
			results[i] <- factsResult{fa, err}
		}()
	}
	var failed []error
	for i, spec := range opts.Hosts {
		r := <-results[i]
		if r.err != nil {
			failed = append(failed, r.err)
			if len(opts.Hosts) > 1 {
				printFactsError(f, spec, r.err)
			}
			continue
		}
		var err error
		if f.JSON {
			err = f.printJSON("facts", factsRecord{Host: spec, Facts: r.facts})
		} else {
			err = printFactsText(f.IO.Out, spec, r.facts, i > 0)
		}
		if err != nil {
			return err
		}
	}
	switch {
	case len(failed) == 0:
		return nil
	case len(opts.Hosts) == 1:
		return failed[0]
	case len(failed) == len(opts.Hosts):
		return fmt.Errorf("facts failed on all %d hosts", len(failed))
	default:
		return hint.WithExit(fmt.Errorf("facts failed on %d of %d hosts", len(failed), len(opts.Hosts)), hint.ExitPartial)
	}
}

func collectFacts(ctx context.Context, f *Factory, spec string) (*facts.Facts, error) {
	h, err := f.OpenHost(ctx, spec)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	var fa facts.Facts
	if err := h.Call(ctx, facts.Method, nil, &fa); err != nil {
		return nil, err
	}
	return &fa, nil
}

// factsRecord is the --json record: {"type":"facts","host":SPEC,...facts}.
type factsRecord struct {
	Host string `json:"host"`
	*facts.Facts
}

// printFactsError reports one host's failure among several: an error
// record on stdout with --json, error and hint lines on stderr otherwise.
func printFactsError(f *Factory, spec string, err error) {
	if f.JSON {
		f.printJSON("error", map[string]any{"host": spec, "error": err.Error(), "hint": hint.Of(err)})
		return
	}
	fmt.Fprintf(f.IO.ErrOut, "migrate: error: %s: %s\n", spec, strings.TrimSpace(err.Error()))
	if h := hint.Of(err); h != "" {
		fmt.Fprintf(f.IO.ErrOut, "migrate: hint: %s\n", h)
	}
}

// printFactsText prints one host as a block of fields and two tables.
func printFactsText(w io.Writer, spec string, fa *facts.Facts, blank bool) error {
	var b strings.Builder
	if blank {
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "== %s ==\n", spec)
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Hostname:\t%s\n", dash(fa.Hostname))
	fmt.Fprintf(tw, "OS:\t%s\n", dash(fa.OS.PrettyName))
	fmt.Fprintf(tw, "Kernel:\t%s (%s)\n", dash(fa.Kernel), dash(fa.Arch))
	fmt.Fprintf(tw, "CPUs:\t%d\n", fa.CPUs)
	fmt.Fprintf(tw, "Memory:\t%s total, %s available\n", factsBytes(fa.MemTotal), factsBytes(fa.MemAvailable))
	fmt.Fprintf(tw, "Packages:\t%s\n", dash(fa.PackageManager))
	init := dash(fa.Init)
	if fa.InitProcess != "" && fa.InitProcess != fa.Init {
		init += " (PID 1: " + fa.InitProcess + ")"
	}
	fmt.Fprintf(tw, "Init:\t%s\n", init)
	tw.Flush()

	b.WriteString("\nMOUNT\tFSTYPE\tSIZE\tFREE\tUSE%\n")
	for _, m := range fa.Mounts {
		use, used := 0.0, m.Size-m.Free
		if used+m.Avail > 0 { // as df: root's reserve is neither used nor available
			use = 100 * float64(used) / float64(used+m.Avail)
		}
		fmt.Fprintf(&b, "%s\t%s\t%s\t%s\t%.0f%%\n", m.Path, m.FSType, factsBytes(m.Size), factsBytes(m.Avail), use)
	}
	b.WriteString("\nPROTO\tADDRESS\tPORT\tPID\tPROCESS\tEXE\tPACKAGE\n")
	for _, s := range fa.Sockets {
		pid := "-"
		if s.PID > 0 {
			pid = fmt.Sprint(s.PID)
		}
		fmt.Fprintf(&b, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", s.Proto, s.Address, s.Port, pid, dash(s.Process), dash(s.Exe), dash(s.Package))
	}
	for _, warn := range fa.Warnings {
		fmt.Fprintf(&b, "\nwarning: %s", warn)
	}
	if len(fa.Warnings) > 0 {
		b.WriteString("\n")
	}
	// Align the two tables separately from the header block.
	out := alignTables(b.String())
	_, err := io.WriteString(w, out)
	return err
}

// alignTables aligns each blank-line-separated paragraph containing tabs.
func alignTables(s string) string {
	var out strings.Builder
	for i, para := range strings.Split(s, "\n\n") {
		if i > 0 {
			out.WriteString("\n\n")
		}
		if !strings.Contains(para, "\t") {
			out.WriteString(para)
			continue
		}
		var pb strings.Builder
		tw := tabwriter.NewWriter(&pb, 0, 4, 2, ' ', 0)
		io.WriteString(tw, para)
		tw.Flush()
		out.WriteString(pb.String())
	}
	return out.String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// factsBytes formats a byte count with binary units.
func factsBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
