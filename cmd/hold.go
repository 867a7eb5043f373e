package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
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
	opts    migrate.HoldOptions
	log     *slog.Logger
	metrics atomic.Pointer[proxy.Metrics]
}

// Requests sums migrate_proxy_requests_total: HTTP requests, TCP
// connections and UDP answers forwarded.
func (p *proxyForwarder) Requests() int64 {
	m := p.metrics.Load()
	if m == nil {
		return 0
	}
	mfs, err := m.Registry.Gather()
	if err != nil {
		return 0
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "migrate_proxy_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			n += m.GetCounter().GetValue()
		}
	}
	return int64(n)
}

func (p *proxyForwarder) Serve(ctx context.Context, held []migrate.Held) error {
	cfg, po, err := holdConfig(held, p.log)
	if err != nil {
		return err
	}
	if p.opts.AccessLog != "" {
		f, err := os.OpenFile(p.opts.AccessLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return fmt.Errorf("access log: %w", err)
		}
		defer f.Close()
		po.AccessLog = f
	}
	po.Metrics = proxy.NewMetrics()
	p.metrics.Store(po.Metrics)
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

// holdConfig is the proxy configuration of the held ports: one listener
// per port and protocol, on the inherited sockets.
func holdConfig(held []migrate.Held, log *slog.Logger) (*proxy.Config, proxy.Options, error) {
	po := proxy.Options{Logger: log, Inherited: map[string]net.Listener{}, InheritedPacket: map[string]net.PacketConn{}}
	var cfg *proxy.Config
	add := func(q proxy.QuickOptions, https bool) error {
		c, err := proxy.QuickConfig(q)
		if err != nil {
			return err
		}
		if https {
			for _, l := range c.Listeners {
				for _, s := range l.Services {
					for _, b := range s.Backends {
						b.HTTPS = true
					}
				}
			}
		}
		if cfg == nil {
			cfg = c
			return nil
		}
		cfg.Listeners = append(cfg.Listeners, c.Listeners...)
		return nil
	}
	for _, h := range held {
		q := proxy.QuickOptions{Listen: h.Port.Listen, To: h.Port.Backend, Mode: h.Port.Mode}
		if h.TCP != nil {
			if h.Port.Mode == migrate.ModeHTTPS {
				q.Mode, q.TLSCert = migrate.ModeHTTP, h.Port.TLSCertFile
			}
			if err := add(q, h.Port.Mode == migrate.ModeHTTPS); err != nil {
				return nil, po, err
			}
			po.Inherited[h.Port.Listen] = h.TCP
		}
		if h.UDP != nil {
			q.Mode, q.TLSCert = "udp", ""
			if err := add(q, false); err != nil {
				return nil, po, err
			}
			po.InheritedPacket[h.Port.Listen] = h.UDP
		}
	}
	if cfg == nil {
		return nil, po, errors.New("nothing held")
	}
	// Apache combined: what migrate drain reads.
	cfg.LogLevel = 4
	for _, l := range cfg.Listeners {
		l.LogLevel = 4
	}
	return cfg, po, nil
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
			log := slog.New(slog.NewTextHandler(f.IO.ErrOut, nil)).With("hold", opts.ControlSocket)
			return migrate.Hold(cmd.Context(), opts, log)
		},
	}
	cmd.Flags().StringVar(&optsFile, "options", "", "JSON file of migrate.HoldOptions")
	cmd.MarkFlagRequired("options")
	return cmd
}
