package cmd

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/migrate-tool/migrate/internal/host"
	"github.com/migrate-tool/migrate/transfer"
)

func init() {
	register(func(f *Factory) *cobra.Command { return NewCmdService(f, nil) })
}

// ServiceOptions are the arguments of `migrate service VERB NAME`.
type ServiceOptions struct {
	F       *Factory
	Verb    string
	Names   []string
	On      string
	Dest    string
	Timeout time.Duration
	Systemd bool
}

// NewCmdService builds `migrate service start|stop|status|remove`.
func NewCmdService(f *Factory, runF func(*ServiceOptions) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "service start|stop|status|remove NAME... --on HOST",
		Short: "Run a shipped service in its chroot on the target, stop it, or remove it without a trace",
		Long: `Manage services shipped with migrate transfer into DEST/NAME/root on HOST.

start   builds the environment (runtime directories, accounts merged into the
        root's etc/passwd and etc/group, standard device nodes, the target's
        resolv.conf and localtime) and starts the recorded start command
        chrooted, in its own mount, PID, UTS and IPC namespaces, sharing the
        target's network, under a supervisor that outlives the SSH session.
        It returns once the recorded ports listen; a service that exits is
        reported with the tail of its output.
stop    runs the recorded stop command (or sends SIGTERM), SIGKILL after --timeout.
status  prints whether it runs, its pid and its last exit status.
remove  stops it, unmounts everything below its root and deletes the root.`,
		Example: `  migrate service start nginx --on ssh://root@10.231.0.2
  migrate service status nginx dns --on new1 --json
  migrate service remove nginx --on new1`,
	}
	for _, verb := range []string{"start", "stop", "status", "remove"} {
		cmd.AddCommand(newCmdServiceVerb(f, verb, runF))
	}
	return cmd
}

func newCmdServiceVerb(f *Factory, verb string, runF func(*ServiceOptions) error) *cobra.Command {
	opts := &ServiceOptions{F: f, Verb: verb}
	short := map[string]string{
		"start":  "Build the environment and start the service in its chroot",
		"stop":   "Stop the service (stop command or SIGTERM, then SIGKILL)",
		"status": "Show whether the service runs",
		"remove": "Stop the service and delete its root, leaving nothing behind",
	}[verb]
	cmd := &cobra.Command{
		Use:   verb + " NAME... --on HOST",
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Names = args
			if opts.On == "" {
				return usagef("--on HOST is required")
			}
			if _, err := host.ParseSpec(opts.On); err != nil {
				return usagef("%v", err)
			}
			for _, n := range args {
				if _, err := transfer.NewLayout(opts.Dest, n); err != nil {
					return usagef("%v", err)
				}
			}
			if runF != nil {
				return runF(opts)
			}
			return serviceRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.On, "on", "", "target host (local, user@host[:port], ssh://user@host:port)")
	fl.StringVar(&opts.Dest, "dest", transfer.DefaultDest, "directory on the target holding NAME/root")
	switch verb {
	case "start":
		fl.DurationVar(&opts.Timeout, "timeout", 15*time.Second, "how long to wait for the service's ports to listen")
		fl.BoolVar(&opts.Systemd, "systemd", false, "run it as a systemd unit with RootDirectory= (needs systemd on the target)")
	case "stop", "remove":
		fl.DurationVar(&opts.Timeout, "timeout", 10*time.Second, "how long to wait after the stop command or SIGTERM before SIGKILL")
	}
	return cmd
}

func serviceRun(ctx context.Context, opts *ServiceOptions) error {
	f := opts.F
	h, err := f.OpenHost(ctx, opts.On)
	if err != nil {
		return err
	}
	defer h.Close()
	call := map[string]func(context.Context, transfer.Caller, transfer.ServiceOptions) (transfer.ServiceStatus, error){
		"start": transfer.StartService, "stop": transfer.StopService,
		"status": transfer.GetServiceStatus, "remove": transfer.RemoveService,
	}[opts.Verb]
	var results []transfer.ServiceStatus
	for _, name := range opts.Names {
		st, err := call(ctx, h, transfer.ServiceOptions{Name: name, Dest: opts.Dest, Timeout: opts.Timeout, Systemd: opts.Systemd})
		if err != nil {
			printServices(f, results)
			return fmt.Errorf("%s %s: %w", opts.Verb, name, err)
		}
		results = append(results, st)
	}
	return printServices(f, results)
}

func printServices(f *Factory, sts []transfer.ServiceStatus) error {
	if f.JSON {
		for _, st := range sts {
			if err := f.printJSON("service", st); err != nil {
				return err
			}
		}
		return nil
	}
	if len(sts) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(f.IO.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tPID\tEXIT\tROOT")
	for _, st := range sts {
		pid, exit := "-", "-"
		if st.PID > 0 {
			pid = fmt.Sprint(st.PID)
		}
		if st.Status == "exited" || st.Status == "stopped" {
			exit = fmt.Sprint(st.ExitCode)
			if st.Signal != "" {
				exit = st.Signal
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", st.Name, st.Status, pid, exit, st.Root)
	}
	return tw.Flush()
}
