package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/migrate-tool/migrate/internal/procstat"
	"github.com/migrate-tool/migrate/internal/takeover"
)

// Held are the sockets of one port of the service, taken over from it.
type Held struct {
	Port HoldPort
	TCP  net.Listener   // all its TCP listening sockets, merged; nil if none
	UDP  net.PacketConn // all its UDP sockets, merged; nil if none
}

// Forwarder serves the held ports once they are released: it accepts from
// the held sockets and forwards to the new host until ctx ends, then
// stops and returns (connections in progress may finish meanwhile). It
// may close what it is given: those are duplicates, and the holder keeps
// the sockets themselves open for a rollback.
type Forwarder interface {
	Serve(ctx context.Context, held []Held) error
}

// NewForwarder builds the forwarder of a holding proxy from its options.
// It is set by the package that owns the proxy engine (wired in cmd).
var NewForwarder func(opts HoldOptions, log *slog.Logger) (Forwarder, error)

// Forwarding modes of a held port.
const (
	ModeHTTP  = "http"  // HTTP proxy: X-Forwarded-For, access log, health checks
	ModeHTTPS = "https" // TLS terminated with TLSCert, HTTPS to the backend
	ModeTCP   = "tcp"   // bytes as they are (TLS passes through untouched)
)

// HoldPort is one port of the service: its sockets and where they go.
type HoldPort struct {
	Port int `json:"port"`
	// TCPFDs and UDPFDs are the inherited sockets (duplicates of the old
	// service's, from internal/takeover), as fd numbers of the holder.
	TCPFDs []int `json:"tcp_fds,omitempty"`
	UDPFDs []int `json:"udp_fds,omitempty"`
	// Listen is the address the proxy reports, ADDR:PORT.
	Listen string `json:"listen"`
	// Backend is where released connections go: NEWADDR:PORT.
	Backend string `json:"backend"`
	// Mode is ModeHTTP, ModeHTTPS or ModeTCP for the TCP sockets; UDP is
	// forwarded as datagrams.
	Mode string `json:"mode"`
	// TLSCertFile holds key and certificate (PEM) for ModeHTTPS.
	TLSCertFile string `json:"tls_cert_file,omitempty"`
}

// HoldOptions configure the holding proxy daemon on the old host.
type HoldOptions struct {
	Ports []HoldPort `json:"ports"`
	// ControlSocket is the Unix socket the daemon answers on.
	ControlSocket string `json:"control_socket"`
	// AccessLog is the file the proxy logs requests to.
	AccessLog string `json:"access_log"`
	// HoldTimeout releases held connections to the backend anyway after
	// this long, so a lost orchestrator cannot hold clients forever; 0
	// means 60s.
	HoldTimeout time.Duration `json:"hold_timeout"`
}

// Control commands of the holding proxy: one JSON request per connection
// on its socket, {"cmd":"release"}, answered by {"ok":true,"state":"…"} or
// {"error":"…"}.
const (
	HoldCmdStatus   = "status"   // state "held" or "serving"
	HoldCmdRelease  = "release"  // start forwarding held and new connections
	HoldCmdRollback = "rollback" // hand the socket back: start argv (the old service) on it, and exit
	HoldCmdStop     = "stop"     // stop forwarding and exit
	HoldCmdMetrics  = "metrics"  // requests forwarded so far (HTTP requests, TCP connections, UDP answers)
)

// RequestCounter is implemented by forwarders that count what they forward.
type RequestCounter interface {
	Requests() int64
}

// HoldRequest is one control request.
type HoldRequest struct {
	Cmd  string   `json:"cmd"`
	Argv []string `json:"argv,omitempty"`
}

// HoldReply answers a control request.
type HoldReply struct {
	OK       bool   `json:"ok"`
	State    string `json:"state,omitempty"`
	Requests int64  `json:"requests,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Hold runs the holding proxy daemon until it is stopped or rolled back:
// it keeps the inherited listening socket open without accepting (so the
// kernel queues new connections) until told to release it.
func Hold(ctx context.Context, opts HoldOptions, log *slog.Logger) error {
	h := &holder{opts: opts, log: log, done: make(chan error, 1)}
	for _, p := range opts.Ports {
		var ps heldPort
		// Inherited fds are not close-on-exec: without the flag they
		// would leak into the old service a rollback starts, and a
		// listening socket nobody accepts on would take a share of
		// the connections (SO_REUSEPORT).
		for _, fd := range p.TCPFDs {
			syscall.CloseOnExec(fd)
			ps.tcp = append(ps.tcp, os.NewFile(uintptr(fd), fmt.Sprintf("tcp-%d", fd)))
		}
		for _, fd := range p.UDPFDs {
			syscall.CloseOnExec(fd)
			ps.udp = append(ps.udp, os.NewFile(uintptr(fd), fmt.Sprintf("udp-%d", fd)))
		}
		if len(ps.tcp)+len(ps.udp) == 0 {
			return fmt.Errorf("no socket to hold for port %d", p.Port)
		}
		h.ports = append(h.ports, ps)
	}
	if len(h.ports) == 0 {
		return errors.New("no port to hold")
	}
	// The sockets must be what they claim before anything is promised.
	held, err := h.held()
	if err != nil {
		return err
	}
	closeHeld(held)
	os.Remove(opts.ControlSocket)
	ctl, err := net.Listen("unix", opts.ControlSocket)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	defer os.Remove(opts.ControlSocket)
	defer ctl.Close()
	if opts.HoldTimeout == 0 {
		opts.HoldTimeout = 60 * time.Second
		h.opts.HoldTimeout = opts.HoldTimeout
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h.cancel = cancel
	timer := time.AfterFunc(opts.HoldTimeout, func() {
		log.Warn("hold timeout: releasing held connections to the backend", "after", opts.HoldTimeout)
		h.release(ctx)
	})
	defer timer.Stop()
	go func() {
		for {
			c, err := ctl.Accept()
			if err != nil {
				return
			}
			go h.control(ctx, c, timer)
		}
	}()
	select {
	case <-ctx.Done():
		h.stopForwarding()
		return nil
	case err := <-h.done:
		return err
	}
}

type holder struct {
	opts     HoldOptions
	ports    []heldPort // the held sockets; closed only when the process exits
	log      *slog.Logger
	cancel   context.CancelFunc
	mu       sync.Mutex
	serving  bool
	fw       Forwarder
	fwCancel context.CancelFunc
	fwDone   chan struct{}
	done     chan error
}

type heldPort struct {
	tcp, udp []*os.File
}

// held returns fresh duplicates of the held sockets, merged per port:
// closing them leaves the sockets open.
func (h *holder) held() ([]Held, error) {
	var out []Held
	for i, ps := range h.ports {
		hp := Held{Port: h.opts.Ports[i]}
		var lns []net.Listener
		for _, f := range ps.tcp {
			ln, err := net.FileListener(f)
			if err != nil {
				return out, fmt.Errorf("held socket %s: %w", f.Name(), err)
			}
			lns = append(lns, ln)
		}
		var pcs []net.PacketConn
		for _, f := range ps.udp {
			pc, err := net.FilePacketConn(f)
			if err != nil {
				return out, fmt.Errorf("held socket %s: %w", f.Name(), err)
			}
			pcs = append(pcs, pc)
		}
		var err error
		if len(lns) > 0 {
			if hp.TCP, err = takeover.MergeListeners(lns); err != nil {
				return out, err
			}
		}
		if len(pcs) > 0 {
			if hp.UDP, err = takeover.MergePacketConns(pcs); err != nil {
				return out, err
			}
		}
		out = append(out, hp)
	}
	return out, nil
}

func (h *holder) control(ctx context.Context, c net.Conn, timer *time.Timer) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var req HoldRequest
	if err := json.NewDecoder(c).Decode(&req); err != nil {
		json.NewEncoder(c).Encode(HoldReply{Error: "bad request: " + err.Error()})
		return
	}
	reply := func(err error, state string) {
		if err != nil {
			json.NewEncoder(c).Encode(HoldReply{Error: err.Error()})
			return
		}
		json.NewEncoder(c).Encode(HoldReply{OK: true, State: state})
	}
	switch req.Cmd {
	case HoldCmdStatus:
		h.mu.Lock()
		s := "held"
		if h.serving {
			s = "serving"
		}
		h.mu.Unlock()
		reply(nil, s)
	case HoldCmdRelease:
		timer.Stop()
		reply(h.release(ctx), "serving")
	case HoldCmdRollback:
		timer.Stop()
		err := h.rollback(req.Argv)
		reply(err, "handed back")
		if err == nil {
			h.done <- nil
		}
	case HoldCmdMetrics:
		h.mu.Lock()
		var n int64
		if rc, ok := h.fw.(RequestCounter); ok {
			n = rc.Requests()
		}
		h.mu.Unlock()
		json.NewEncoder(c).Encode(HoldReply{OK: true, State: "serving", Requests: n})
	case HoldCmdStop:
		timer.Stop()
		reply(nil, "stopping")
		h.cancel()
	default:
		reply(fmt.Errorf("unknown command %q", req.Cmd), "")
	}
}

func (h *holder) release(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.serving {
		return nil
	}
	if NewForwarder == nil {
		return errors.New("no forwarder in this build")
	}
	fw, err := NewForwarder(h.opts, h.log)
	if err != nil {
		return err
	}
	held, err := h.held()
	if err != nil {
		return err
	}
	fctx, fcancel := context.WithCancel(ctx)
	h.serving, h.fw, h.fwCancel, h.fwDone = true, fw, fcancel, make(chan struct{})
	go func() {
		defer close(h.fwDone)
		err := fw.Serve(fctx, held)
		closeHeld(held)
		if err != nil && fctx.Err() == nil {
			h.log.Error("forwarder stopped", "err", err)
			h.done <- err
		}
	}()
	for _, p := range h.opts.Ports {
		h.log.Info("released: forwarding", "listen", p.Listen, "backend", p.Backend, "mode", p.Mode)
	}
	return nil
}

// stopForwarding stops accepting; connections being forwarded finish
// meanwhile. Call with h.mu held, or at exit.
func (h *holder) stopForwarding() error {
	if !h.serving {
		return nil
	}
	h.fwCancel()
	select {
	case <-h.fwDone:
	case <-time.After(10 * time.Second):
		return errors.New("the forwarder did not stop accepting within 10s")
	}
	h.serving = false
	return nil
}

// rollback starts the old service again on the held address, then the
// holder exits and its copies of the sockets close.
//
// nginx takes the held sockets as they are: they are its fds 3 and up
// (TCP first) and NGINX="3;4;…" names them, so the connections queued
// meanwhile are served by it. Other daemons (Postfix, BIND) bind afresh.
// Where the held sockets have SO_REUSEPORT (Postfix and BIND set it), the
// daemon binds beside them and the holder closes its copies once the
// daemon listens on every held TCP port: no connection is refused, and
// those that waited in the holder's queue are reset (SMTP senders and
// resolvers try again). Without SO_REUSEPORT the daemon could not bind
// while the holder holds the address, so the copies are closed first: a
// short window of refused connections.
func (h *holder) rollback(argv []string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(argv) == 0 {
		return errors.New("rollback needs the old service's start command")
	}
	if err := h.stopForwarding(); err != nil {
		return err
	}
	// A stop interrupted half-way may have left a file changed for it
	// (Postfix's master.cf): the old service starts with its own.
	if err := restorePostfixConfig(filepath.Dir(h.opts.ControlSocket)); err != nil {
		return err
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer devnull.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	inherit := filepath.Base(argv[0]) == "nginx"
	reuse := h.reusePort()
	if inherit {
		nginx := ""
		for _, ps := range h.ports {
			for _, f := range ps.tcp {
				cmd.ExtraFiles = append(cmd.ExtraFiles, f)
				nginx += fmt.Sprintf("%d;", 2+len(cmd.ExtraFiles))
			}
		}
		cmd.Env = append(os.Environ(), "NGINX="+nginx)
	} else if !reuse {
		h.closeSockets()
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", argv[0], err)
	}
	go cmd.Wait()
	if !inherit && reuse {
		err := h.waitListening(cmd.Process.Pid, 30*time.Second)
		h.closeSockets()
		if err != nil {
			return err
		}
	}
	h.log.Info("rolled back: old service started", "pid", cmd.Process.Pid, "argv", argv, "inherited_sockets", inherit, "reuseport", reuse)
	return nil
}

// reusePort reports whether every held socket has SO_REUSEPORT.
func (h *holder) reusePort() bool {
	for _, ps := range h.ports {
		for _, f := range append(slices.Clone(ps.tcp), ps.udp...) {
			rc, err := f.SyscallConn()
			if err != nil {
				return false
			}
			v := 0
			if err := rc.Control(func(fd uintptr) { v, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT) }); err != nil || v == 0 {
				return false
			}
		}
	}
	return true
}

// waitListening waits until a process other than this one listens on
// every held TCP port, or the service started as pid has exited.
func (h *holder) waitListening(pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		missing := 0
		for i, ps := range h.ports {
			if len(ps.tcp) == 0 {
				continue
			}
			socks, _ := takeover.Find("/proc", "tcp", h.opts.Ports[i].Port)
			if !slices.ContainsFunc(socks, func(s takeover.Socket) bool { return s.PID != os.Getpid() }) {
				missing = h.opts.Ports[i].Port
			}
		}
		if missing == 0 {
			return nil
		}
		if !procstat.Alive(pid) {
			return fmt.Errorf("the old service (pid %d) exited before it listened on port %d", pid, missing)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the old service does not listen on port %d after %v", missing, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// closeSockets closes the holder's copies of the held sockets.
func (h *holder) closeSockets() {
	for _, ps := range h.ports {
		closeAll(ps.tcp)
		closeAll(ps.udp)
	}
}

// HoldControl sends one request to a holding proxy's control socket and
// returns the state it reports.
func HoldControl(ctx context.Context, socket string, req HoldRequest) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return "", fmt.Errorf("holding proxy at %s: %w", socket, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(30 * time.Second))
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return "", fmt.Errorf("holding proxy at %s: %w", socket, err)
	}
	var rep HoldReply
	if err := json.NewDecoder(c).Decode(&rep); err != nil {
		return "", fmt.Errorf("holding proxy at %s: %w", socket, err)
	}
	if !rep.OK {
		return "", fmt.Errorf("holding proxy: %s", rep.Error)
	}
	return rep.State, nil
}

// closeHeld closes the duplicates in held (the sockets stay open).
func closeHeld(held []Held) {
	for _, hp := range held {
		if hp.TCP != nil {
			hp.TCP.Close()
		}
		if hp.UDP != nil {
			hp.UDP.Close()
		}
	}
}

// HoldRequests asks a holding proxy how many requests it has forwarded.
func HoldRequests(ctx context.Context, socket string) (int64, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return 0, fmt.Errorf("holding proxy at %s: %w", socket, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := json.NewEncoder(c).Encode(HoldRequest{Cmd: HoldCmdMetrics}); err != nil {
		return 0, err
	}
	var rep HoldReply
	if err := json.NewDecoder(c).Decode(&rep); err != nil {
		return 0, fmt.Errorf("holding proxy at %s: %w", socket, err)
	}
	if !rep.OK {
		return 0, fmt.Errorf("holding proxy: %s", rep.Error)
	}
	return rep.Requests, nil
}
