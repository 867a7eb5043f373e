package proxy

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"

	"github.com/migrate-tool/migrate/internal/hint"
)

// QuickOptions describe a one-listener proxy without a config file.
type QuickOptions struct {
	Listen        string // ADDR:PORT
	To            string // ADDR:PORT
	Emergency     string // optional ADDR:PORT
	Host          string // optional regular expression on the Host header
	TLSCert       string // optional key+certificate PEM: the listener speaks HTTPS
	ProxyProtocol int    // 0, 1 or 2
	Mode          string // http (default), tcp or udp
}

// QuickConfig builds the configuration for QuickOptions.
func QuickConfig(o QuickOptions) (*Config, error) {
	cfg := defaultConfig("(command line)")
	lh, lp, err := splitPort(o.Listen, "--listen")
	if err != nil {
		return nil, err
	}
	mode := o.Mode
	if mode == "" {
		mode = KindHTTP
	}
	lc := &ListenerConfig{Name: "--listen", Kind: mode, Address: lh, Port: lp, LogLevel: -1, ErrorFiles: map[int][]byte{}, XHTTP: 3}
	switch mode {
	case KindHTTP:
		if o.TLSCert != "" {
			lc.Kind = KindHTTPS
			pemBytes, err := os.ReadFile(o.TLSCert)
			if err != nil {
				return nil, fmt.Errorf("--tls-cert: %w", err)
			}
			cert, err := tls.X509KeyPair(pemBytes, pemBytes)
			if err != nil {
				return nil, hint.With(fmt.Errorf("--tls-cert %s: %w", o.TLSCert, err), "the file must hold the private key and the certificate chain, PEM encoded")
			}
			lc.Certs = []tls.Certificate{cert}
		}
	case KindTCP, KindUDP:
		if o.TLSCert != "" || o.Host != "" {
			return nil, fmt.Errorf("--tls-cert and --host need --mode http")
		}
	default:
		return nil, fmt.Errorf("--mode %q: want http, tcp or udp", mode)
	}
	svc := &ServiceConfig{Name: "to", Balancer: "random"}
	if o.Host != "" {
		re, err := regexp.Compile("(?i)" + o.Host)
		if err != nil {
			return nil, fmt.Errorf("--host: %w", err)
		}
		svc.Cond = append(svc.Cond, Cond{Kind: "host", Re: re})
	}
	be, err := quickBackend(o.To, "--to", o.ProxyProtocol)
	if err != nil {
		return nil, err
	}
	svc.Backends = append(svc.Backends, be)
	if o.Emergency != "" {
		em, err := quickBackend(o.Emergency, "--emergency", o.ProxyProtocol)
		if err != nil {
			return nil, err
		}
		em.Emergency = true
		svc.Emergency = append(svc.Emergency, em)
	}
	lc.Services = []*ServiceConfig{svc}
	cfg.Listeners = []*ListenerConfig{lc}
	cfg.Alive = 5e9
	return cfg, nil
}

func quickBackend(addr, flag string, pp int) (*BackendConfig, error) {
	h, p, err := splitPort(addr, flag)
	if err != nil {
		return nil, err
	}
	return &BackendConfig{Address: h, Port: p, Weight: 1, ProxyProtocol: pp}, nil
}

func splitPort(s, flag string) (string, int, error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, hint.With(fmt.Errorf("%s %q: %w", flag, s, err), "give ADDR:PORT, e.g. 0.0.0.0:80 or [::1]:8080")
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("%s %q: bad port", flag, s)
	}
	return h, n, nil
}
