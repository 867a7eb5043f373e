package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/migrate-tool/migrate/internal/hint"
)

// Status is the state the control API reports.
type Status struct {
	Listeners []ListenerStatus `json:"listeners"`
	Services  []ServiceStatus  `json:"services"`
}

// ListenerStatus describes one listener.
type ListenerStatus struct {
	Kind     string   `json:"kind"`
	Address  string   `json:"address"`
	Services []string `json:"services"`
}

// ServiceStatus describes one service and its backends.
type ServiceStatus struct {
	Name     string          `json:"name"`
	Sessions int             `json:"sessions"`
	Backends []BackendStatus `json:"backends"`
}

// BackendStatus describes one backend.
type BackendStatus struct {
	Key       string `json:"key"`
	Address   string `json:"address"`
	Emergency bool   `json:"emergency"`
	Alive     bool   `json:"alive"`
	Disabled  bool   `json:"disabled"`
	Weight    int    `json:"weight"`
}

// Status returns the current listeners, services and backends.
func (s *Server) Status() Status {
	s.mu.Lock()
	in := s.cur
	s.mu.Unlock()
	var st Status
	names := func(ss []*service) []string {
		var out []string
		for _, x := range ss {
			out = append(out, x.name)
		}
		return out
	}
	for _, l := range in.http {
		st.Listeners = append(st.Listeners, ListenerStatus{Kind: l.cfg.Kind, Address: strings.TrimPrefix(l.name, l.cfg.Name+" "), Services: names(l.services)})
	}
	for _, l := range in.tcp {
		st.Listeners = append(st.Listeners, ListenerStatus{Kind: KindTCP, Address: strings.TrimPrefix(l.name, l.cfg.Name+" "), Services: names([]*service{l.svc})})
	}
	for _, l := range in.udp {
		st.Listeners = append(st.Listeners, ListenerStatus{Kind: KindUDP, Address: strings.TrimPrefix(l.name, l.cfg.Name+" "), Services: names([]*service{l.svc})})
	}
	for _, svc := range in.services {
		ss := ServiceStatus{Name: svc.name}
		if svc.sess != nil {
			ss.Sessions = svc.sess.len()
		}
		for _, b := range svc.all() {
			ss.Backends = append(ss.Backends, BackendStatus{Key: b.key, Address: b.addr, Emergency: b.cfg.Emergency,
				Alive: b.alive.Load(), Disabled: b.disabled.Load(), Weight: b.cfg.Weight})
		}
		st.Services = append(st.Services, ss)
	}
	return st
}

// ErrNoSuchBackend is returned for a backend key or address that matches
// nothing.
var ErrNoSuchBackend = errors.New("no such backend")

// SetDisabled disables or enables the backends whose key (service/index)
// or address (host:port) is id, and returns how many changed.
func (s *Server) SetDisabled(id string, disabled bool) (int, error) {
	s.mu.Lock()
	in := s.cur
	s.mu.Unlock()
	n := 0
	for _, svc := range in.services {
		for _, b := range svc.all() {
			if b.key == id || b.addr == id {
				b.disabled.Store(disabled)
				if disabled {
					b.closeIdle()
				}
				n++
			}
		}
	}
	if n == 0 {
		return 0, hint.With(fmt.Errorf("%w: %s", ErrNoSuchBackend, id), "list backends with `migrate proxy ctl -C SOCKET list`")
	}
	return n, nil
}

type controlServer struct {
	path string
	ln   net.Listener
	srv  *http.Server
}

func (s *Server) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.Status())
	})
	for _, verb := range []string{"disable", "enable"} {
		mux.HandleFunc("POST /"+verb, func(w http.ResponseWriter, r *http.Request) {
			n, err := s.SetDisabled(r.URL.Query().Get("backend"), verb == "disable")
			w.Header().Set("Content-Type", "application/json")
			if err != nil {
				w.WriteHeader(http.StatusNotFound)
				json.NewEncoder(w).Encode(map[string]string{"error": err.Error(), "hint": hint.Of(err)})
				return
			}
			json.NewEncoder(w).Encode(map[string]int{"changed": n})
		})
	}
	return mux
}

// startSide opens the control socket and the metrics listener.
func (s *Server) startSide(cfg *Config) error {
	if cfg.Control != "" {
		if st, err := os.Lstat(cfg.Control); err == nil && st.Mode()&os.ModeSocket != 0 {
			os.Remove(cfg.Control) // a stale socket from a previous run; never another kind of file
		}
		ln, err := net.Listen("unix", cfg.Control)
		if err != nil {
			return hint.With(fmt.Errorf("control socket: %w", err), "check that the directory of Control exists and is writable")
		}
		os.Chmod(cfg.Control, 0o600)
		cs := &controlServer{path: cfg.Control, ln: ln, srv: &http.Server{Handler: s.controlHandler(), ReadHeaderTimeout: 5 * time.Second}}
		go cs.srv.Serve(ln)
		s.ctl = cs
	}
	if cfg.Metrics != "" {
		ln, err := net.Listen("tcp", cfg.Metrics)
		if err != nil {
			return hint.With(fmt.Errorf("metrics listener: %w", err), "choose a free address for Metrics / --metrics")
		}
		s.mln = ln
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.m.Registry, promhttp.HandlerOpts{}))
		go (&http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}).Serve(ln)
	}
	return nil
}

func (s *Server) stopSide() {
	if s.ctl != nil {
		s.ctl.srv.Close()
		os.Remove(s.ctl.path)
		s.ctl = nil
	}
	if s.mln != nil {
		s.mln.Close()
		s.mln = nil
	}
}

func (s *Server) restartSide(old, cfg *Config) error {
	if old.Control == cfg.Control && old.Metrics == cfg.Metrics {
		return nil
	}
	s.stopSide()
	return s.startSide(cfg)
}

// Control is a client of a running proxy's control socket.
type Control struct {
	Path string
	c    *http.Client
}

// NewControl returns a client for the control socket at path.
func NewControl(path string) *Control {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &Control{Path: path, c: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

func (c *Control) do(ctx context.Context, method, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://proxy"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.c.Do(req)
	if err != nil {
		return hint.With(fmt.Errorf("control socket %s: %w", c.Path, unwrapURLError(err)), "is the proxy running with this Control socket?")
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error, Hint string }
		json.Unmarshal(body, &e)
		if e.Error == "" {
			e.Error = resp.Status
		}
		return hint.With(errors.New(e.Error), e.Hint)
	}
	return json.Unmarshal(body, v)
}

func unwrapURLError(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}

// Status fetches the proxy's status.
func (c *Control) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/status", &st)
	return st, err
}

// SetDisabled disables or enables a backend by key or address.
func (c *Control) SetDisabled(ctx context.Context, id string, disabled bool) (int, error) {
	verb := "enable"
	if disabled {
		verb = "disable"
	}
	var r struct{ Changed int }
	err := c.do(ctx, http.MethodPost, "/"+verb+"?backend="+urlQueryEscape(id), &r)
	return r.Changed, err
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }
