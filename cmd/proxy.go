package cmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/migrate-tool/migrate/internal/hint"
	"github.com/migrate-tool/migrate/proxy"
)

func init() {
	register(func(f *Factory) *cobra.Command { return NewCmdProxy(f, nil) })
	poundMain = NewCmdPound
}

// ProxyOptions are the flags of `migrate proxy`.
type ProxyOptions struct {
	IO         IOStreams
	Factory    *Factory
	File       string
	Check      bool
	PIDFile    string
	AccessLog  string // "-" stderr, "syslog", a file, "" none
	Metrics    string
	Control    string
	Quick      proxy.QuickOptions
	PoundMode  bool
	Foreground bool
}

// NewCmdProxy builds `migrate proxy`.
func NewCmdProxy(f *Factory, runF func(*ProxyOptions) error) *cobra.Command {
	opts := &ProxyOptions{Factory: f}
	var pp bool
	c := &cobra.Command{
		Use:   "proxy (-f FILE | --listen ADDR:PORT --to ADDR:PORT)",
		Short: "Forward clients to the new host (reads Pound configuration files)",
		Long: `Run the forwarding proxy: HTTP/1.1 (and HTTPS), TCP or UDP, with health checks,
Emergency failover and a Pound-compatible configuration file.

  migrate proxy -f /etc/pound/pound.cfg        run a Pound configuration
  migrate proxy -c -f /etc/pound/pound.cfg     check it and report every problem
  migrate proxy --listen 0.0.0.0:80 --to 10.0.0.2:80 [--emergency ADDR:PORT]

SIGHUP reloads the file; SIGTERM stops after requests in flight finish.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.IO = f.IO
			if pp {
				opts.Quick.ProxyProtocol = 2
			}
			if opts.File == "" && opts.Quick.Listen == "" {
				return usagef("give -f FILE or --listen ADDR:PORT --to ADDR:PORT")
			}
			if opts.File != "" && opts.Quick.Listen != "" {
				return usagef("-f and --listen cannot be combined")
			}
			if opts.Quick.Listen != "" && opts.Quick.To == "" {
				return usagef("--listen needs --to ADDR:PORT")
			}
			if opts.Quick.Listen == "" && (opts.Quick.To != "" || opts.Quick.Emergency != "") {
				return usagef("--to and --emergency need --listen")
			}
			if runF != nil {
				return runF(opts)
			}
			return proxyRun(cmd.Context(), opts)
		},
	}
	fl := c.Flags()
	fl.StringVarP(&opts.File, "file", "f", "", "Pound configuration file")
	fl.BoolVarP(&opts.Check, "check", "c", false, "check the configuration and exit")
	fl.StringVarP(&opts.PIDFile, "pid-file", "p", "", "write the process id to this file (overrides PIDFile)")
	fl.StringVar(&opts.AccessLog, "access-log", "-", `access log: "-" for stderr, "syslog", a file, or "" for none`)
	fl.StringVar(&opts.Metrics, "metrics", "", "serve Prometheus metrics on ADDR:PORT at /metrics")
	fl.StringVar(&opts.Control, "control", "", "serve the control API on this Unix socket (overrides Control)")
	fl.StringVar(&opts.Quick.Listen, "listen", "", "listen on ADDR:PORT (without -f)")
	fl.StringVar(&opts.Quick.To, "to", "", "forward to ADDR:PORT")
	fl.StringVar(&opts.Quick.Emergency, "emergency", "", "forward here when --to is down")
	fl.StringVar(&opts.Quick.Host, "host", "", "only requests whose Host matches this regular expression")
	fl.StringVar(&opts.Quick.TLSCert, "tls-cert", "", "key and certificate PEM: listen with HTTPS")
	fl.BoolVar(&pp, "proxy-protocol", false, "send a PROXY protocol v2 header to the backend")
	fl.StringVar(&opts.Quick.Mode, "mode", "http", "http, tcp or udp")
	c.AddCommand(NewCmdProxyCtl(f, nil))
	return c
}

// NewCmdPound is the command line of the binary invoked as "pound".
func NewCmdPound(f *Factory) *cobra.Command {
	opts := &ProxyOptions{Factory: f, PoundMode: true, File: "/etc/pound/pound.cfg"}
	var logStderr, version bool
	c := &cobra.Command{
		Use:           "pound [-f FILE] [-c] [-p PIDFILE] [-e] [-F] [-v] [-V]",
		Short:         "Pound-compatible reverse proxy (migrate proxy)",
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.IO = f.IO
			if version {
				fmt.Fprintln(f.IO.Out, "pound (migrate proxy), Pound 4 configuration compatible")
				return nil
			}
			opts.AccessLog = "syslog"
			if logStderr {
				opts.AccessLog = "-"
			}
			opts.Foreground = opts.Foreground || logStderr
			return proxyRun(cmd.Context(), opts)
		},
	}
	c.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &usageError{err} })
	fl := c.Flags()
	fl.StringVarP(&opts.File, "file", "f", opts.File, "configuration file")
	fl.BoolVarP(&opts.Check, "check", "c", false, "check the configuration and exit")
	fl.StringVarP(&opts.PIDFile, "pid-file", "p", "", "PID file")
	fl.BoolVarP(&logStderr, "stderr", "e", false, "log to stderr and stay in the foreground")
	fl.BoolVarP(&opts.Foreground, "foreground", "F", false, "stay in the foreground")
	fl.BoolVarP(&f.Verbose, "verbose", "v", false, "verbose logging")
	fl.BoolVarP(&version, "version", "V", false, "print the version")
	c.PersistentPreRun = func(*cobra.Command, []string) { f.Logger = newLogger(f) }
	return c
}

func newLogger(f *Factory) *slogLogger {
	level := slogLevelWarn
	if f.Verbose {
		level = slogLevelDebug
	}
	return newTextLogger(f.IO.ErrOut, level)
}

func proxyRun(ctx context.Context, opts *ProxyOptions) error {
	f := opts.Factory
	cfg, err := loadProxyConfig(opts)
	if opts.Check && f.JSON {
		printCheckJSON(f, opts.File, cfg, err)
	}
	if err != nil {
		return err
	}
	if opts.Check {
		if !f.JSON {
			fmt.Fprintf(opts.IO.Out, "Config file %s is OK\n", cfg.File)
		}
		return nil
	}
	if opts.PoundMode && cfg.Daemon && !opts.Foreground && os.Getenv(daemonEnv) == "" {
		return daemonize(opts)
	}
	alog, closeLog, err := openAccessLog(opts, cfg)
	if err != nil {
		return err
	}
	defer closeLog()
	if lw, ok := alog.(lineWriter); ok && !opts.Foreground && opts.PoundMode {
		// A daemon has no stderr: backend state changes go to syslog too.
		f.Logger = newTextLogger(lw, map[bool]slog.Level{true: slog.LevelDebug, false: slog.LevelWarn}[f.Verbose])
	}
	srv, err := proxy.NewServer(cfg, proxy.Options{Logger: f.Logger, AccessLog: alog})
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		notifyParent(err)
		return err
	}
	pidFile := cfg.PIDFile
	if opts.PIDFile != "" {
		pidFile = opts.PIDFile
	}
	if pidFile != "" {
		if err := proxy.WritePIDFile(pidFile); err != nil {
			srv.Shutdown(ctx)
			notifyParent(err)
			return err
		}
		defer os.Remove(pidFile)
	}
	if opts.PoundMode {
		if err := proxy.DropPrivileges(cfg); err != nil {
			srv.Shutdown(ctx)
			notifyParent(err)
			return err
		}
	}
	notifyParent(nil)
	f.Logger.Info("proxy running", "listeners", fmt.Sprint(srv.ListenerAddrs()))
	return serveUntilStopped(ctx, opts, srv, cfg)
}

func serveUntilStopped(ctx context.Context, opts *ProxyOptions, srv *proxy.Server, cfg *proxy.Config) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			if opts.File == "" {
				continue
			}
			next, err := proxy.ParseFile(opts.File)
			if err == nil {
				if opts.Metrics != "" {
					next.Metrics = opts.Metrics
				}
				if opts.Control != "" {
					next.Control = opts.Control
				}
				err = srv.Reload(next)
			}
			if err != nil {
				opts.Factory.Logger.Error("reload failed; keeping the running configuration", "err", err)
				continue
			}
			cfg = next
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), cfg.Grace+time.Second)
			srv.Shutdown(sctx)
			cancel()
			return nil // a requested stop is a clean exit
		}
	}
}

// checkDiag is one problem or warning in `proxy -c --json` output.
type checkDiag struct {
	Pos     string `json:"pos"`
	Message string `json:"message"`
}

// printCheckJSON prints the result of a check as one summary record.
func printCheckJSON(f *Factory, file string, cfg *proxy.Config, err error) {
	rec := struct {
		File     string      `json:"file"`
		OK       bool        `json:"ok"`
		Problems []checkDiag `json:"problems"`
		Warnings []checkDiag `json:"warnings"`
	}{File: file, OK: err == nil, Problems: []checkDiag{}, Warnings: []checkDiag{}}
	var ce *proxy.ConfigError
	if errors.As(err, &ce) {
		for _, d := range ce.Diags {
			rec.Problems = append(rec.Problems, checkDiag{d.Pos.String(), d.Msg})
		}
	}
	if cfg != nil {
		for _, w := range cfg.Warnings {
			rec.Warnings = append(rec.Warnings, checkDiag{w.Pos.String(), w.Msg})
		}
	}
	f.printJSON("summary", rec)
}

// loadProxyConfig parses the file (printing warnings) or builds the
// configuration from the flags.
func loadProxyConfig(opts *ProxyOptions) (*proxy.Config, error) {
	var cfg *proxy.Config
	var err error
	if opts.File != "" {
		cfg, err = proxy.ParseFile(opts.File)
		if cfg != nil {
			for _, w := range cfg.Warnings {
				fmt.Fprintf(opts.IO.ErrOut, "%s: warning: %s\n", w.Pos, w.Msg)
			}
		}
		var ce *proxy.ConfigError
		if errors.As(err, &ce) {
			for _, d := range ce.Diags {
				fmt.Fprintln(opts.IO.ErrOut, d.String())
			}
			return cfg, hint.With(&configProblems{file: opts.File, err: ce},
				"fix the lines above and run `migrate proxy -c -f FILE` again")
		}
		if err != nil {
			return nil, err
		}
	} else {
		cfg, err = proxy.QuickConfig(opts.Quick)
		if err != nil {
			return nil, err
		}
	}
	if opts.Metrics != "" {
		cfg.Metrics = opts.Metrics
	}
	if opts.Control != "" {
		cfg.Control = opts.Control
	}
	return cfg, nil
}

// configProblems summarises a *proxy.ConfigError whose lines were printed.
type configProblems struct {
	file string
	err  *proxy.ConfigError
}

func (e *configProblems) Error() string {
	n := len(e.err.Diags)
	return fmt.Sprintf("%s: %d problem%s found", e.file, n, map[bool]string{true: "s"}[n != 1])
}

func (e *configProblems) Unwrap() error { return e.err }

// lineWriter sends each line as its own syslog message.
type lineWriter struct{ w io.Writer }

func (l lineWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.SplitAfter(p, []byte("\n")) {
		if len(line) > 0 {
			l.w.Write(line)
		}
	}
	return len(p), nil
}

var facilities = map[string]syslog.Priority{"daemon": syslog.LOG_DAEMON, "local0": syslog.LOG_LOCAL0, "local1": syslog.LOG_LOCAL1,
	"local2": syslog.LOG_LOCAL2, "local3": syslog.LOG_LOCAL3, "local4": syslog.LOG_LOCAL4, "local5": syslog.LOG_LOCAL5,
	"local6": syslog.LOG_LOCAL6, "local7": syslog.LOG_LOCAL7, "user": syslog.LOG_USER}

func openAccessLog(opts *ProxyOptions, cfg *proxy.Config) (io.Writer, func(), error) {
	dest := opts.AccessLog
	if cfg.AccessLog != "" {
		dest = cfg.AccessLog
	}
	switch {
	case dest == "" || cfg.LogLevel == 0:
		return nil, func() {}, nil
	case dest == "-":
		return opts.IO.ErrOut, func() {}, nil
	case dest == "syslog":
		fac, ok := facilities[strings.ToLower(cfg.LogFacility)]
		if !ok {
			fac = syslog.LOG_DAEMON
		}
		w, err := syslog.New(fac|syslog.LOG_INFO, "pound")
		if err != nil {
			// No syslog daemon: fall back to stderr rather than losing the log.
			return opts.IO.ErrOut, func() {}, nil
		}
		return lineWriter{w}, func() { w.Close() }, nil
	}
	fh, err := os.OpenFile(dest, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("access log: %w", err)
	}
	return fh, func() { fh.Close() }, nil
}

const daemonEnv = "MIGRATE_POUND_DAEMON"

// daemonize starts the same command in the background (Daemon 1) and
// returns once the child reports that it is serving.
func daemonize(opts *ProxyOptions) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer null.Close()
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(os.Environ(), daemonEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, null, null
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("start daemon: %w", err)
	}
	w.Close()
	msg, _ := io.ReadAll(io.LimitReader(r, 4096))
	cmd.Process.Release()
	if s := strings.TrimSpace(string(msg)); s != "ok" {
		if s == "" {
			s = "the daemon exited before it was ready"
		}
		return errors.New(s)
	}
	return nil
}

// notifyParent tells a waiting daemonize whether start-up worked.
func notifyParent(err error) {
	if os.Getenv(daemonEnv) == "" {
		return
	}
	fh := os.NewFile(3, "ready")
	if fh == nil {
		return
	}
	if err != nil {
		fmt.Fprintln(fh, err.Error())
	} else {
		fmt.Fprintln(fh, "ok")
	}
	fh.Close()
}

// ProxyCtlOptions are the flags of `migrate proxy ctl`.
type ProxyCtlOptions struct {
	IO      IOStreams
	Factory *Factory
	Socket  string
	Verb    string
	Backend string
}

// NewCmdProxyCtl builds `migrate proxy ctl`.
func NewCmdProxyCtl(f *Factory, runF func(*ProxyCtlOptions) error) *cobra.Command {
	opts := &ProxyCtlOptions{Factory: f}
	c := &cobra.Command{
		Use:   "ctl -C SOCKET (list | disable BACKEND | enable BACKEND)",
		Short: "Show or change a running proxy through its Control socket",
		Long: `List the listeners, services and backends of a running proxy, or take a backend
out of rotation and back. BACKEND is a key from the list (service/index) or an
address (host:port), which matches that backend in every service.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("give list, disable BACKEND or enable BACKEND")
			}
			switch args[0] {
			case "list":
				if len(args) != 1 {
					return usagef("list takes no arguments")
				}
			case "disable", "enable":
				if len(args) != 2 {
					return usagef("%s needs one BACKEND", args[0])
				}
			default:
				return usagef("unknown ctl verb %q (want list, disable or enable)", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.IO = f.IO
			opts.Verb = args[0]
			if len(args) > 1 {
				opts.Backend = args[1]
			}
			if opts.Socket == "" {
				return usagef("-C SOCKET is required")
			}
			if runF != nil {
				return runF(opts)
			}
			return proxyCtlRun(cmd.Context(), opts)
		},
	}
	c.Flags().StringVarP(&opts.Socket, "control", "C", "", "the proxy's Control socket")
	return c
}

func proxyCtlRun(ctx context.Context, opts *ProxyCtlOptions) error {
	f := opts.Factory
	ctl := proxy.NewControl(opts.Socket)
	if opts.Verb != "list" {
		n, err := ctl.SetDisabled(ctx, opts.Backend, opts.Verb == "disable")
		if err != nil {
			return err
		}
		if f.JSON {
			return f.printJSON("status", map[string]any{"backend": opts.Backend, "action": opts.Verb, "changed": n})
		}
		fmt.Fprintf(opts.IO.Out, "%sd %s (%d backend%s)\n", opts.Verb, opts.Backend, n, map[bool]string{true: "s"}[n != 1])
		return nil
	}
	st, err := ctl.Status(ctx)
	if err != nil {
		return err
	}
	if f.JSON {
		for _, l := range st.Listeners {
			f.printJSON("listener", l)
		}
		for _, s := range st.Services {
			for _, b := range s.Backends {
				f.printJSON("backend", map[string]any{"service": s.Name, "key": b.Key, "address": b.Address,
					"emergency": b.Emergency, "alive": b.Alive, "disabled": b.Disabled, "weight": b.Weight})
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(opts.IO.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LISTENER\tKIND\tSERVICES")
	for _, l := range st.Listeners {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", l.Address, l.Kind, strings.Join(l.Services, ","))
	}
	fmt.Fprintln(tw, "\nBACKEND\tADDRESS\tSTATE\tWEIGHT\tSERVICE")
	for _, s := range st.Services {
		for _, b := range s.Backends {
			state := "alive"
			if !b.Alive {
				state = "dead"
			}
			if b.Disabled {
				state += ",disabled"
			}
			if b.Emergency {
				state += ",emergency"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", b.Key, b.Address, state, b.Weight, s.Name)
		}
	}
	return tw.Flush()
}

type slogLogger = slog.Logger

const (
	slogLevelWarn  = slog.LevelWarn
	slogLevelDebug = slog.LevelDebug
)

func newTextLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}
