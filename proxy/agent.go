package proxy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/migrate-tool/migrate/internal/agent"
	"github.com/migrate-tool/migrate/internal/hint"
)

// Agent methods for running the proxy on a host (usually the old one).
const (
	MethodStart = "proxy.start"
	MethodStop  = "proxy.stop"
	MethodCtl   = "proxy.ctl"
)

// DefaultDir holds the configuration, PID file, control socket and
// access log of a proxy started through the agent.
const DefaultDir = "/var/lib/migrate/proxy"

// StartParams are the parameters of proxy.start.
type StartParams struct {
	Config string `json:"config"` // Pound configuration text
	Dir    string `json:"dir,omitempty"`
}

// StartResult is the result of proxy.start.
type StartResult struct {
	PID       int    `json:"pid"`
	Config    string `json:"config"`
	Control   string `json:"control"`
	AccessLog string `json:"access_log"`
}

// StopParams are the parameters of proxy.stop.
type StopParams struct {
	Dir string `json:"dir,omitempty"`
}

// StopResult is the result of proxy.stop.
type StopResult struct {
	PID     int  `json:"pid"`
	Stopped bool `json:"stopped"`
}

// CtlParams are the parameters of proxy.ctl: the control socket (default
// DefaultDir/ctl.sock), an action ("list", "disable" or "enable") and,
// for the last two, a backend key or host:port.
type CtlParams struct {
	Control string `json:"control,omitempty"`
	Action  string `json:"action"`
	Backend string `json:"backend,omitempty"`
}

// CtlResult is the result of proxy.ctl: Status for list, Changed otherwise.
type CtlResult struct {
	Status  *Status `json:"status,omitempty"`
	Changed int     `json:"changed,omitempty"`
}

// Ctl runs one control action against a proxy on this host.
func Ctl(ctx context.Context, p CtlParams) (*CtlResult, error) {
	sock := p.Control
	if sock == "" {
		sock = filepath.Join(DefaultDir, "ctl.sock")
	}
	c := NewControl(sock)
	switch p.Action {
	case "list":
		st, err := c.Status(ctx)
		if err != nil {
			return nil, err
		}
		return &CtlResult{Status: &st}, nil
	case "disable", "enable":
		n, err := c.SetDisabled(ctx, p.Backend, p.Action == "disable")
		if err != nil {
			return nil, err
		}
		return &CtlResult{Changed: n}, nil
	}
	return nil, fmt.Errorf("proxy ctl: unknown action %q (want list, disable or enable)", p.Action)
}

func init() {
	agent.Register(MethodCtl, func(ctx context.Context, c *agent.Call) (any, error) {
		var p CtlParams
		if err := c.Decode(&p); err != nil {
			return nil, err
		}
		return Ctl(ctx, p)
	})
	agent.Register(MethodStart, func(ctx context.Context, c *agent.Call) (any, error) {
		var p StartParams
		if err := c.Decode(&p); err != nil {
			return nil, err
		}
		return Start(ctx, p)
	})
	agent.Register(MethodStop, func(ctx context.Context, c *agent.Call) (any, error) {
		var p StopParams
		if err := c.Decode(&p); err != nil {
			return nil, err
		}
		return Stop(ctx, p)
	})
}

// Start checks the configuration, writes it under Dir and starts
// `migrate proxy` from this binary in the background (its own session, so
// it outlives the agent). It returns once the proxy serves, with its PID.
// The control socket is Dir/ctl.sock unless the configuration names one.
func Start(ctx context.Context, p StartParams) (*StartResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("proxy start: %w", err)
	}
	return start(ctx, p, exe)
}

func start(ctx context.Context, p StartParams, exe string) (*StartResult, error) {
	dir := p.Dir
	if dir == "" {
		dir = DefaultDir
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("proxy start: %w", err)
	}
	res := &StartResult{Config: filepath.Join(dir, "proxy.cfg"), Control: filepath.Join(dir, "ctl.sock"), AccessLog: filepath.Join(dir, "access.log")}
	text := p.Config
	cfg, err := Parse(res.Config, []byte(text))
	if err != nil {
		return nil, hint.With(fmt.Errorf("proxy start: %w", err), "check the configuration with `migrate proxy -c -f FILE`")
	}
	if cfg.Control == "" {
		text = "Control \"" + res.Control + "\"\n" + text
	} else {
		res.Control = cfg.Control
	}
	if pid := runningPID(dir); pid > 0 {
		return nil, hint.With(fmt.Errorf("proxy start: a proxy already runs from %s (pid %d)", dir, pid), "stop it with proxy.stop first")
	}
	tmp := res.Config + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		return nil, fmt.Errorf("proxy start: %w", err)
	}
	if err := os.Rename(tmp, res.Config); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("proxy start: %w", err)
	}
	pidFile := filepath.Join(dir, "proxy.pid")
	os.Remove(pidFile)
	errLog, err := os.OpenFile(filepath.Join(dir, "proxy.err"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("proxy start: %w", err)
	}
	defer errLog.Close()
	cmd := exec.Command(exe, "proxy", "-f", res.Config, "-p", pidFile, "--access-log", res.AccessLog)
	cmd.Stdout, cmd.Stderr = errLog, errLog
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("proxy start: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case <-exited:
			msg, _ := os.ReadFile(filepath.Join(dir, "proxy.err"))
			return nil, fmt.Errorf("proxy start: the proxy exited: %s", strings.TrimSpace(lastLine(string(msg))))
		case <-deadline.C:
			cmd.Process.Kill()
			return nil, errors.New("proxy start: not serving after 10s")
		case <-ctx.Done():
			cmd.Process.Kill()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
			if pid := runningPID(dir); pid > 0 {
				res.PID = pid
				cmd.Process.Release()
				return res, nil
			}
		}
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		// The error line comes before the hint line.
		if strings.Contains(s[i:], "hint:") {
			if j := strings.LastIndexByte(s[:i], '\n'); j >= 0 {
				return s[j+1:]
			}
			return s[:i]
		}
		return s[i+1:]
	}
	return s
}

// runningPID returns the PID in dir's PID file if that process lives.
func runningPID(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "proxy.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || syscall.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}

// Stop sends SIGTERM to the proxy started from Dir and waits for it to
// finish its requests in flight (at most 30 s, then SIGKILL).
func Stop(ctx context.Context, p StopParams) (*StopResult, error) {
	dir := p.Dir
	if dir == "" {
		dir = DefaultDir
	}
	pid := runningPID(dir)
	if pid == 0 {
		return &StopResult{}, nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return nil, fmt.Errorf("proxy stop: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for syscall.Kill(pid, 0) == nil && !zombie(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return &StopResult{PID: pid, Stopped: true}, nil
}

func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] == 'Z'
	}
	return false
}
