package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/migrate-tool/migrate/internal/agent"
	"github.com/migrate-tool/migrate/internal/hint"
	"github.com/migrate-tool/migrate/internal/takeover"
)

// Agent methods run on the old host during cutover.
const (
	MethodTakeover = "cutover.takeover"
	MethodHoldCtl  = "cutover.control"
	MethodHoldReqs = "cutover.requests"
)

// StateDir holds the holding proxy's control socket, options and log on
// the old host.
const StateDir = "/var/lib/migrate/cutover"

// TakeoverParams ask the old host to hand its service's address to a
// holding proxy and stop the service gracefully.
type TakeoverParams struct {
	Name        string         `json:"name"`
	Ports       []TakeoverPort `json:"ports"`
	StopSignal  string         `json:"stop_signal,omitempty"`
	StopTimeout time.Duration  `json:"stop_timeout,omitempty"`
	HoldTimeout time.Duration  `json:"hold_timeout,omitempty"`
}

// TakeoverPort is one port of the service to hold and where it goes.
type TakeoverPort struct {
	Port    int    `json:"port"`
	Listen  string `json:"listen"`  // the old address, for the record
	Backend string `json:"backend"` // NEWADDR:PORT
	Mode    string `json:"mode"`    // ModeHTTP, ModeHTTPS or ModeTCP
	// TLSCert is the key and certificate (PEM) that terminate TLS in
	// ModeHTTPS; it is written 0600 on the old host, never logged.
	TLSCert []byte `json:"tls_cert,omitempty"`
}

// TakeoverResult is what the old host did.
type TakeoverResult struct {
	Proxy      ProxyState `json:"proxy"`
	StoppedPID []int      `json:"stopped_pids"`
	SpawnTook  string     `json:"spawn_took"`
	StopTook   string     `json:"stop_took"`
}

// HoldCtlParams relay a control request to the holding proxy on the host.
type HoldCtlParams struct {
	Socket  string      `json:"socket"`
	Request HoldRequest `json:"request"`
}

func init() {
	agent.Register(MethodTakeover, agent.Typed(takeOver))
	agent.Register(MethodHoldCtl, agent.Typed(func(ctx context.Context, p HoldCtlParams) (string, error) {
		return HoldControl(ctx, p.Socket, p.Request)
	}))
	agent.Register(MethodHoldReqs, agent.Typed(func(ctx context.Context, p HoldCtlParams) (int64, error) {
		return HoldRequests(ctx, p.Socket)
	}))
}

// HoldCommand is the hidden command the holding proxy daemon runs as; cmd
// registers it under this name.
const HoldCommand = "hold"

func takeOver(ctx context.Context, p TakeoverParams) (*TakeoverResult, error) {
	if len(p.Ports) == 0 {
		return nil, errors.New("takeover: no port to take over")
	}
	dir := filepath.Join(StateDir, p.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("takeover: %w", err)
	}
	opts := HoldOptions{ControlSocket: filepath.Join(dir, "control.sock"), AccessLog: filepath.Join(dir, "access.log"),
		HoldTimeout: p.HoldTimeout}
	var files []*os.File
	var all []takeover.Socket
	defer func() { closeAll(files) }()
	for _, tp := range p.Ports {
		hp, socks, fs, err := takePort(dir, tp, len(files))
		if err != nil {
			return nil, err
		}
		files = append(files, fs...)
		all = append(all, socks...)
		opts.Ports = append(opts.Ports, hp)
	}
	start := time.Now()
	pid, err := spawnHolder(ctx, dir, opts, files)
	if err != nil {
		return nil, err
	}
	spawnTook := time.Since(start)
	start = time.Now()
	stopped, err := stopGracefully(ctx, all, p.StopSignal, p.StopTimeout)
	if err != nil {
		// Give the address back: the old service still runs, so the
		// holder's copy of the socket can simply go.
		_, _ = HoldControl(ctx, opts.ControlSocket, HoldRequest{Cmd: HoldCmdStop})
		return nil, err
	}
	first := p.Ports[0]
	ps := ProxyState{PID: pid, ControlSocket: opts.ControlSocket, AccessLog: opts.AccessLog,
		LogFormat: "combined", Listen: first.Listen, Backend: first.Backend, TakenAt: time.Now().UTC()}
	for _, tp := range p.Ports {
		ps.Ports = append(ps.Ports, fmt.Sprintf("%s -> %s (%s)", tp.Listen, tp.Backend, tp.Mode))
	}
	return &TakeoverResult{Proxy: ps, StoppedPID: stopped,
		SpawnTook: spawnTook.Round(time.Millisecond).String(),
		StopTook:  time.Since(start).Round(time.Millisecond).String(),
	}, nil
}

// takePort duplicates the service's sockets on one port: every TCP
// listening socket, and its UDP sockets on the port (BIND). Their fds in
// the holder start at 3+before.
func takePort(dir string, tp TakeoverPort, before int) (HoldPort, []takeover.Socket, []*os.File, error) {
	hp := HoldPort{Port: tp.Port, Listen: tp.Listen, Backend: tp.Backend, Mode: tp.Mode}
	if tp.Port == 0 || tp.Backend == "" {
		return hp, nil, nil, errors.New("takeover: port and backend are required")
	}
	socks, err := takeover.Find("/proc", "tcp", tp.Port)
	if err != nil {
		return hp, nil, nil, err
	}
	pids := map[int]bool{}
	for _, s := range socks {
		pids[s.PID] = true
	}
	var usocks []takeover.Socket
	if all, err := takeover.Find("/proc", "udp", tp.Port); err == nil {
		for _, s := range all {
			if pids[s.PID] {
				usocks = append(usocks, s)
			}
		}
	}
	tcpFiles, err := takeover.DupAll(socks)
	if err != nil {
		return hp, nil, nil, err
	}
	udpFiles, err := takeover.DupAll(usocks)
	if err != nil {
		closeAll(tcpFiles)
		return hp, nil, nil, err
	}
	for i := range tcpFiles {
		hp.TCPFDs = append(hp.TCPFDs, 3+before+i)
	}
	for i := range udpFiles {
		hp.UDPFDs = append(hp.UDPFDs, 3+before+len(tcpFiles)+i)
	}
	if len(tp.TLSCert) > 0 {
		hp.TLSCertFile = filepath.Join(dir, fmt.Sprintf("tls-%d.pem", tp.Port))
		if err := os.WriteFile(hp.TLSCertFile, tp.TLSCert, 0o600); err != nil {
			closeAll(append(tcpFiles, udpFiles...))
			return hp, nil, nil, fmt.Errorf("takeover: %w", err)
		}
	}
	return hp, append(socks, usocks...), append(tcpFiles, udpFiles...), nil
}

// spawnHolder starts the holding proxy daemon with the sockets as its fds 3…,
// in a session of its own so it outlives the agent, and waits until it
// answers on its control socket.
func spawnHolder(ctx context.Context, dir string, opts HoldOptions, socks []*os.File) (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	b, _ := json.Marshal(opts)
	optsFile := filepath.Join(dir, "hold.json")
	if err := os.WriteFile(optsFile, b, 0o600); err != nil {
		return 0, err
	}
	logf, err := os.OpenFile(filepath.Join(dir, "hold.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd := exec.Command(exe, HoldCommand, "--options", optsFile)
	cmd.ExtraFiles = socks
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start holding proxy: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := HoldControl(ctx, opts.ControlSocket, HoldRequest{Cmd: HoldCmdStatus})
		if err == nil && st == "held" {
			return cmd.Process.Pid, nil
		}
		select {
		case werr := <-exited:
			tail, _ := os.ReadFile(filepath.Join(dir, "hold.log"))
			return 0, fmt.Errorf("holding proxy exited at start (%v): %s", werr, lastLine(tail))
		case <-ctx.Done():
			cmd.Process.Kill()
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			return 0, fmt.Errorf("holding proxy did not answer within 5s: %v", err)
		}
	}
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// stopSignals are the graceful-stop signals of services that do not stop
// gracefully on SIGTERM.
var stopSignals = map[string]syscall.Signal{
	"nginx":   syscall.SIGQUIT,
	"apache2": syscall.SIGWINCH,
	"httpd":   syscall.SIGWINCH,
}

// stopGracefully signals the main process of the service holding socks and
// waits until every process that held the socket is gone, escalating to
// SIGKILL after timeout.
func stopGracefully(ctx context.Context, socks []takeover.Socket, sigName string, timeout time.Duration) ([]int, error) {
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	var pids []int
	for _, s := range socks {
		if !slices.Contains(pids, s.PID) {
			pids = append(pids, s.PID)
		}
	}
	main := pids[0]
	for _, pid := range pids {
		if !slices.Contains(pids, parentOf(pid)) {
			main = pid
			break
		}
	}
	sig := syscall.SIGTERM
	if s, ok := stopSignals[exeName(main)]; ok {
		sig = s
	}
	if sigName != "" {
		n, err := parseSignal(sigName)
		if err != nil {
			return nil, err
		}
		sig = n
	}
	if err := syscall.Kill(main, sig); err != nil {
		return nil, fmt.Errorf("stop old service (pid %d): %w", main, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		alive := slices.DeleteFunc(slices.Clone(pids), func(p int) bool { return !running(p) })
		if len(alive) == 0 {
			return pids, nil
		}
		if time.Now().After(deadline) {
			for _, p := range alive {
				syscall.Kill(p, syscall.SIGKILL)
			}
			return pids, nil
		}
		select {
		case <-ctx.Done():
			return pids, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func parseSignal(name string) (syscall.Signal, error) {
	switch strings.TrimPrefix(strings.ToUpper(name), "SIG") {
	case "TERM":
		return syscall.SIGTERM, nil
	case "QUIT":
		return syscall.SIGQUIT, nil
	case "INT":
		return syscall.SIGINT, nil
	case "HUP":
		return syscall.SIGHUP, nil
	case "WINCH":
		return syscall.SIGWINCH, nil
	case "USR1":
		return syscall.SIGUSR1, nil
	}
	return 0, hint.With(fmt.Errorf("unknown stop signal %q", name), "use TERM, QUIT, INT, HUP, WINCH or USR1")
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func parentOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

func exeName(pid int) string {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return ""
	}
	return filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
