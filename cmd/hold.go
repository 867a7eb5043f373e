package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/migrate-tool/migrate/migrate"
	"github.com/migrate-tool/migrate/proxy"
)

func init() {
	register(NewCmdHold)
	migrate.NewForwarder = func(o migrate.HoldOptions, log *slog.Logger) (migrate.Forwarder, error) {
		return &proxyForwarder{opts: o, log: log}, nil
	}
}

// proxyForwarder runs the proxy engine on the held socket once released.
type proxyForwarder struct {
	opts migrate.HoldOptions
	log  *slog.Logger
}

func (p *proxyForwarder) Serve(ctx context.Context, held migrate.Held) error {
	cfg, err := proxy.QuickConfig(proxy.QuickOptions{Listen: p.opts.Listen, To: p.opts.Backend, Mode: p.opts.Mode})
	if err != nil {
		return err
	}
	// Apache combined: what migrate drain reads.
	cfg.LogLevel = 4
	for _, l := range cfg.Listeners {
		l.LogLevel = 4
	}
	po := proxy.Options{Logger: p.log}
	if held.TCP != nil {
		po.Inherited = map[string]net.Listener{p.opts.Listen: held.TCP}
	} else {
		cfg.Listeners = nil
	}
	if held.UDP != nil {
		udp, err := proxy.QuickConfig(proxy.QuickOptions{Listen: p.opts.Listen, To: p.opts.Backend, Mode: "udp"})
		if err != nil {
			return err
		}
		cfg.Listeners = append(cfg.Listeners, udp.Listeners...)
		po.InheritedPacket = map[string]net.PacketConn{p.opts.Listen: held.UDP}
	}
	if p.opts.AccessLog != "" {
		f, err := os.OpenFile(p.opts.AccessLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return fmt.Errorf("access log: %w", err)
		}
		defer f.Close()
		po.AccessLog = f
	}
	srv, err := proxy.NewServer(cfg, po)
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// NewCmdHold is the hidden daemon that holds a service's address during
// cutover (started by the agent on the old host with the listening socket
// as fd 3; see migrate.Hold).
func NewCmdHold(f *Factory) *cobra.Command {
	var optsFile string
	cmd := &cobra.Command{
		Use:    migrate.HoldCommand,
		Short:  "Hold a taken-over listening socket until released (started by cutover)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(optsFile)
			if err != nil {
				return err
			}
			var opts migrate.HoldOptions
			if err := json.Unmarshal(b, &opts); err != nil {
				return fmt.Errorf("%s: %w", optsFile, err)
			}
			log := slog.New(slog.NewTextHandler(f.IO.ErrOut, nil)).With("hold", opts.Listen)
			return migrate.Hold(cmd.Context(), opts, log)
		},
	}
	cmd.Flags().StringVar(&optsFile, "options", "", "JSON file of migrate.HoldOptions")
	cmd.MarkFlagRequired("options")
	return cmd
}
