package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/migrate-tool/migrate/internal/agent"
	"github.com/migrate-tool/migrate/internal/hint"
	"github.com/migrate-tool/migrate/internal/procstat"
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
	stopLog, err := os.OpenFile(filepath.Join(dir, "stop.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("takeover: %w", err)
	}
	defer stopLog.Close()
	var ports []int
	for _, tp := range p.Ports {
		ports = append(ports, tp.Port)
	}
	stopped, err := stopGracefully(ctx, stopRequest{socks: all, ports: ports, stateDir: dir,
		signal: p.StopSignal, timeout: p.StopTimeout, log: stopLog})
	if err != nil {
		if stopped == nil {
			// Give the address back: the old service still runs, so
			// the holder's copy of the socket can simply go.
			_, _ = HoldControl(ctx, opts.ControlSocket, HoldRequest{Cmd: HoldCmdStop})
		}
		// Else the service was stopping: the holder keeps the address
		// for the rollback to start the old service on it again.
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

// stopRequest is what stopGracefully stops and how.
type stopRequest struct {
	socks    []takeover.Socket // the service's listening sockets
	ports    []int             // the ports taken over
	stateDir string            // where a file changed for the stop is backed up
	signal   string            // the stop signal, instead of the service's own
	timeout  time.Duration     // until what still runs is killed (default 30s)
	log      io.Writer
}

// stopGracefully stops the service holding socks without cutting the
// sessions it is serving, and waits until every process of it is gone: the
// main process and all its descendants, also those reparented on the way,
// escalating to SIGTERM and then SIGKILL after timeout.
//
// The main process gets the service's graceful-stop signal (stopSignals,
// or the one asked for). Postfix has none; its sessions are let finish
// first (quiescePostfix), then master gets SIGTERM.
//
// What it does is written to log, a line an event. The pids returned are
// nil when nothing was stopped.
func stopGracefully(ctx context.Context, r stopRequest) (pids []int, err error) {
	timeout := r.timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(r.log, "%s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
	}
	var holders []int
	for _, s := range r.socks {
		if !slices.Contains(holders, s.PID) {
			holders = append(holders, s.PID)
		}
	}
	main := holders[0]
	for _, pid := range holders {
		if !slices.Contains(holders, parentOf(pid)) {
			main = pid
			break
		}
	}
	sig := syscall.SIGTERM
	if s, ok := stopSignals[exeName(main)]; ok {
		sig = s
	}
	if r.signal != "" {
		n, err := parseSignal(r.signal)
		if err != nil {
			return nil, err
		}
		sig = n
	}
	tree := newProcTree(main, holders)
	deadline := time.Now().Add(timeout)
	postfix := isPostfixMaster(main)
	queueDir := ""
	if postfix {
		queueDir = postfixQueueDir(main)
	}
	if r.signal == "" && postfix {
		logf("stopping postfix (master pid %d); its processes %s", main, tree.describe(tree.pids()))
		restore, err := quiescePostfix(ctx, tree, main, r.ports, r.stateDir, deadline, logf)
		if err != nil {
			return nil, err
		}
		defer func() {
			if rerr := restore(); rerr != nil {
				logf("postfix: %v", rerr)
				err = errors.Join(err, hint.With(rerr, "put master.cf back by hand before the old Postfix starts again"))
			} else {
				logf("postfix: master.cf put back")
			}
		}()
		deadline = time.Now().Add(5 * time.Second) // the sessions are over: master and its helpers exit at once
	}
	logf("stopping %s: %v to pid %d; its processes %s", exeName(main), sig, main, tree.describe(tree.alive()))
	if err := syscall.Kill(main, sig); err != nil {
		return tree.pids(), fmt.Errorf("stop old service (pid %d): %w", main, err)
	}
	escalated := syscall.Signal(0)
	for {
		alive := tree.alive()
		if len(alive) == 0 {
			logf("stopped: all %d processes gone", len(tree.order))
			if queueDir != "" {
				if n := releaseDeferredIncoming(queueDir, time.Now()); n > 0 {
					logf("postfix: %d message(s) a restarted qmgr had deferred behind a delivery in flight: time stamps set to now", n)
				}
			}
			return tree.pids(), nil
		}
		if time.Now().After(deadline) {
			// Whatever still runs now is stuck: SIGTERM, then 2s
			// later SIGKILL.
			next := syscall.SIGTERM
			if escalated == syscall.SIGTERM {
				next = syscall.SIGKILL
			}
			if escalated != syscall.SIGKILL {
				logf("still running after the timeout, sending %v: %s", next, tree.describe(alive))
				for _, p := range alive {
					syscall.Kill(p, next)
				}
				escalated = next
				deadline = time.Now().Add(2 * time.Second)
			} else {
				return tree.pids(), nil // in uninterruptible sleep: dead once it wakes
			}
		}
		select {
		case <-ctx.Done():
			return tree.pids(), ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// isPostfixMaster reports whether pid runs Postfix's master(8): an
// executable named master beside Postfix's smtpd and postfix-script.
func isPostfixMaster(pid int) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || filepath.Base(exe) != "master" {
		return false
	}
	root := fmt.Sprintf("/proc/%d/root", pid)
	for _, f := range []string{"smtpd", "postfix-script"} {
		if _, err := os.Stat(filepath.Join(root, filepath.Dir(exe), f)); err != nil {
			return false
		}
	}
	return true
}

// procTree is a service's processes: each known by pid and start time, so
// a reused pid is not mistaken for one of them.
type procTree struct {
	procs map[int]uint64 // pid -> start time
	order []int
}

// newProcTree records root, extra and all their descendants.
func newProcTree(root int, extra []int) *procTree {
	t := &procTree{procs: map[int]uint64{}}
	for _, pid := range append([]int{root}, extra...) {
		if st, ok := procstat.Read(pid); ok {
			t.add(pid, st.Start)
		}
	}
	t.grow()
	return t
}

func (t *procTree) add(pid int, start uint64) {
	if _, ok := t.procs[pid]; !ok {
		t.procs[pid] = start
		t.order = append(t.order, pid)
	}
}

// grow adds every running process whose parent is in the tree, until none
// is left to add (a child forked while the service stops is waited for
// too). Only the tree's own processes are read, not all of /proc.
func (t *procTree) grow() {
	queue := slices.Clone(t.order)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if st, ok := procstat.Read(p); !ok || st.Start != t.procs[p] {
			continue // gone, or the pid now belongs to another process
		}
		for _, c := range procstat.Children(p) {
			if _, ok := t.procs[c]; ok {
				continue
			}
			if st, ok := procstat.Read(c); ok {
				t.add(c, st.Start)
				queue = append(queue, c)
			}
		}
	}
}

// alive returns the tree's processes still running (zombies count as gone).
func (t *procTree) alive() []int {
	t.grow()
	var out []int
	for _, pid := range t.order {
		if st, ok := procstat.Read(pid); ok && st.Start == t.procs[pid] && !st.Zombie() {
			out = append(out, pid)
		}
	}
	return out
}

func (t *procTree) pids() []int { return slices.Clone(t.order) }

// describe names pids with their command names: "123 (smtpd), 124 (qmgr)".
func (t *procTree) describe(pids []int) string {
	var b strings.Builder
	for i, p := range pids {
		if i > 0 {
			b.WriteString(", ")
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p))
		fmt.Fprintf(&b, "%d (%s)", p, strings.TrimSpace(string(comm)))
	}
	return b.String()
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

func parentOf(pid int) int {
	st, _ := procstat.Read(pid)
	return st.PPID
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
