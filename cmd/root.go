// Package cmd is migrate's command line: the cobra tree, flags, text and
// --json rendering, and exit codes. No other package imports cobra.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/migrate-tool/migrate/internal/hint"
)

// IOStreams are the standard streams a command uses; tests inject buffers.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
}

// SSHOptions are the global flags that shape how remote hosts are reached.
type SSHOptions struct {
	ConnectTimeout   time.Duration
	AcceptNewHostKey bool
	KnownHosts       string
	Identity         []string
	SSHConfig        string
}

// Factory carries what every command needs: streams, output mode, logger
// and the options for reaching hosts.
type Factory struct {
	IO      IOStreams
	JSON    bool
	Verbose bool
	SSH     SSHOptions
	Logger  *slog.Logger
}

// usageError marks a bad command line: exit 2 and print usage.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }
func (e *usageError) ExitCode() int { return hint.ExitUsage }

// usagef returns a usage error (exit code 2).
func usagef(format string, a ...any) error {
	return &usageError{fmt.Errorf(format, a...)}
}

// Main runs migrate with os.Args and returns the exit code.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	streams := IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	return Run(ctx, streams, os.Args)
}

// Run executes the command line args (args[0] is the program name) and
// returns the exit code. It is Main without the process globals, for tests.
func Run(ctx context.Context, streams IOStreams, args []string) int {
	f := &Factory{IO: streams}
	var root *cobra.Command
	if alias := filepath.Base(args[0]); alias == "pound" && poundMain != nil {
		root = poundMain(f)
	} else {
		root = NewCmdRoot(f)
	}
	root.SetArgs(args[1:])
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return hint.ExitOK
	}
	if strings.HasPrefix(err.Error(), "unknown command") {
		err = &usageError{err}
	}
	code := hint.Code(err)
	if errors.Is(err, context.Canceled) || ctx.Err() != nil {
		code = hint.ExitCancelled
	}
	printError(f, err)
	if code == hint.ExitUsage && cmd != nil {
		fmt.Fprintln(streams.ErrOut)
		fmt.Fprint(streams.ErrOut, cmd.UsageString())
	}
	if f.JSON {
		writeJSONLine(streams.ErrOut, map[string]any{"type": "exit_error", "error": err.Error(), "hint": hint.Of(err), "exit_code": code})
	}
	return code
}

// poundMain, when set, builds the command tree used when the binary is
// invoked as "pound".
var poundMain func(f *Factory) *cobra.Command

// printError prints err as "migrate: error:" plus an optional hint line.
func printError(f *Factory, err error) {
	msg := strings.TrimSpace(err.Error())
	fmt.Fprintf(f.IO.ErrOut, "migrate: error: %s\n", msg)
	if h := hint.Of(err); h != "" {
		fmt.Fprintf(f.IO.ErrOut, "migrate: hint: %s\n", h)
	}
}

// subcommands are added by each command file's init, in the order of the
// workflow. Each entry builds one top-level command.
var subcommands []func(f *Factory) *cobra.Command

func register(fn func(f *Factory) *cobra.Command) { subcommands = append(subcommands, fn) }

// markUsageErrors makes argument-count errors usage errors (exit 2) in the
// whole tree.
func markUsageErrors(c *cobra.Command) {
	if args := c.Args; args != nil {
		c.Args = func(cmd *cobra.Command, a []string) error {
			if err := args(cmd, a); err != nil {
				return &usageError{err}
			}
			return nil
		}
	}
	c.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	for _, sub := range c.Commands() {
		markUsageErrors(sub)
	}
}

// NewCmdRoot builds the whole command tree.
func NewCmdRoot(f *Factory) *cobra.Command {
	root := &cobra.Command{
		Use:           "migrate",
		Short:         "Move a running Linux service to a new server without its users noticing",
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			level := slog.LevelWarn
			if f.Verbose {
				level = slog.LevelDebug
			}
			f.Logger = slog.New(slog.NewTextHandler(f.IO.ErrOut, &slog.HandlerOptions{Level: level}))
			return nil
		},
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &usageError{err} })
	pf := root.PersistentFlags()
	pf.BoolVarP(&f.Verbose, "verbose", "v", false, "log what is being done to stderr")
	pf.BoolVar(&f.JSON, "json", false, "print results as NDJSON records on stdout")
	pf.DurationVar(&f.SSH.ConnectTimeout, "connect-timeout", 10*time.Second, "give up connecting to a host after this long")
	pf.BoolVar(&f.SSH.AcceptNewHostKey, "accept-new-host-key", false, "trust and record the key of a host not yet in known_hosts (never a changed key)")
	pf.StringVar(&f.SSH.KnownHosts, "known-hosts", "", "known_hosts file (default ~/.ssh/known_hosts)")
	pf.StringArrayVarP(&f.SSH.Identity, "identity", "i", nil, "private key file for SSH (repeatable; ssh-agent and ~/.ssh/config are used too)")
	pf.StringVarP(&f.SSH.SSHConfig, "ssh-config", "F", "", "ssh_config file (default ~/.ssh/config)")
	for _, fn := range subcommands {
		root.AddCommand(fn(f))
	}
	markUsageErrors(root)
	f.Logger = slog.New(slog.NewTextHandler(f.IO.ErrOut, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return root
}
