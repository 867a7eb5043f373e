package transfer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/migrate-tool/migrate/capture"
	"github.com/migrate-tool/migrate/internal/chroot"
	"github.com/migrate-tool/migrate/internal/hint"
)

// Agent methods for the service lifecycle.
const (
	MethodStart  = "service.start"
	MethodStop   = "service.stop"
	MethodStatus = "service.status"
	MethodRemove = "service.remove"
)

// ServiceOptions name a service on the target.
type ServiceOptions struct {
	Name    string        `json:"name"`
	Dest    string        `json:"dest,omitempty"`
	Timeout time.Duration `json:"timeout,omitempty"` // start: until listening; stop: before SIGKILL
	Systemd bool          `json:"systemd,omitempty"` // start: write and start a systemd unit instead
}

// ServiceStatus is the state of one service on the target.
type ServiceStatus struct {
	Name          string         `json:"name"`
	Root          string         `json:"root"`
	Status        string         `json:"status"` // running | exited | stopped | removed
	Complete      bool           `json:"complete"`
	Digest        string         `json:"digest,omitempty"` // manifest digest of the last archive completed in the root
	PID           int            `json:"pid,omitempty"`
	SupervisorPID int            `json:"supervisor_pid,omitempty"`
	ExitCode      int            `json:"exit_code"`
	Signal        string         `json:"signal,omitempty"`
	Started       time.Time      `json:"started,omitzero"`
	Ports         []capture.Port `json:"ports,omitempty"`
	Unit          string         `json:"unit,omitempty"`
}

// StartService builds the environment of the shipped root and starts its
// service there; it returns once the recorded ports listen.
func StartService(ctx context.Context, c Caller, o ServiceOptions) (ServiceStatus, error) {
	var st ServiceStatus
	err := c.Call(ctx, MethodStart, o, &st)
	return st, err
}

// StopService stops the service (stop command or SIGTERM, then SIGKILL).
func StopService(ctx context.Context, c Caller, o ServiceOptions) (ServiceStatus, error) {
	var st ServiceStatus
	err := c.Call(ctx, MethodStop, o, &st)
	return st, err
}

// GetServiceStatus reports the service's state.
func GetServiceStatus(ctx context.Context, c Caller, o ServiceOptions) (ServiceStatus, error) {
	var st ServiceStatus
	err := c.Call(ctx, MethodStatus, o, &st)
	return st, err
}

// RemoveService stops the service, unmounts everything below its root and
// deletes the root and its state.
func RemoveService(ctx context.Context, c Caller, o ServiceOptions) (ServiceStatus, error) {
	var st ServiceStatus
	err := c.Call(ctx, MethodRemove, o, &st)
	return st, err
}

func existing(o ServiceOptions) (Layout, error) {
	l, err := NewLayout(o.Dest, o.Name)
	if err != nil {
		return l, err
	}
	if _, err := os.Lstat(l.Dir()); err != nil {
		return l, hint.With(fmt.Errorf("service %s: %w (%s)", o.Name, ErrUnknownService, l.Dir()),
			"list what was shipped with `ls "+l.Dest+"` on the target, or check --dest")
	}
	return l, nil
}

func statusOf(l Layout, st chroot.State) ServiceStatus {
	s := ServiceStatus{Name: l.Name, Root: l.Root(), Status: st.Status, Complete: l.Complete() != "", Digest: l.Complete(),
		SupervisorPID: st.SupervisorPID, ExitCode: st.ExitCode, Signal: st.Signal, Started: st.Started}
	if st.Alive() {
		s.Status = chroot.StatusRunning
		s.PID = chroot.ServicePID(st)
	}
	if m, err := l.Manifest(); err == nil {
		s.Ports = m.Ports
	}
	return s
}

func startService(ctx context.Context, o ServiceOptions) (*ServiceStatus, error) {
	l, err := existing(o)
	if err != nil {
		return nil, err
	}
	m, err := l.Manifest()
	if err != nil {
		return nil, err
	}
	if l.Complete() == "" {
		return nil, hint.With(fmt.Errorf("root of %s at %s is not complete", l.Name, l.Root()),
			"run the transfer again to finish it")
	}
	if len(m.Start) == 0 {
		return nil, hint.With(fmt.Errorf("the manifest of %s records no start command", l.Name), "capture the service again with its start command")
	}
	if cur, err := chroot.ReadState(l.Dir()); err == nil && cur.Alive() {
		s := statusOf(l, cur)
		return &s, nil
	}
	if err := buildEnv(l, m); err != nil {
		return nil, err
	}
	if o.Systemd {
		return startSystemd(ctx, l, m)
	}
	spec, err := specOf(l, m)
	if err != nil {
		return nil, err
	}
	if err := chroot.Launch(spec); err != nil {
		return nil, err
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	st, err := chroot.Wait(ctx, l.Dir(), portsOf(m), 300*time.Millisecond, timeout)
	if err != nil {
		_, _ = chroot.Stop(context.WithoutCancel(ctx), l.Dir(), 2*time.Second)
		return nil, hint.WithExit(hint.With(fmt.Errorf("service %s failed to start in its chroot: %w", l.Name, err),
			"the full output is in "+filepath.Join(l.Dir(), chroot.LogFile)+" on the target"), hint.ExitFailed)
	}
	s := statusOf(l, st)
	return &s, nil
}

func specOf(l Layout, m *capture.Manifest) (*chroot.Spec, error) {
	root, err := openExistingRoot(l.Root())
	if err != nil {
		return nil, err
	}
	defer root.Close()
	argv := append([]string(nil), m.Start...)
	if argv[0], err = resolveArgv0(root, argv[0]); err != nil {
		return nil, err
	}
	hostname := m.Host
	if hostname == "" || len(hostname) > 64 || strings.ContainsAny(hostname, "/: ") {
		hostname, _ = os.Hostname()
	}
	return &chroot.Spec{Name: l.Name, Dir: l.Dir(), Root: l.Root(), Start: argv, Stop: m.Stop, Hostname: hostname,
		Env: []string{"PATH=" + defaultPath, "HOME=/root", "LANG=C.UTF-8"}}, nil
}

func portsOf(m *capture.Manifest) []chroot.Port {
	var ps []chroot.Port
	for _, p := range m.Ports {
		ps = append(ps, chroot.Port{Proto: p.Proto, Port: p.Port})
	}
	return ps
}

func stopService(ctx context.Context, o ServiceOptions) (*ServiceStatus, error) {
	l, err := existing(o)
	if err != nil {
		return nil, err
	}
	if stopUnit(ctx, l) {
		s := statusOf(l, chroot.State{Status: chroot.StatusStopped})
		return &s, nil
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	st, err := chroot.Stop(ctx, l.Dir(), timeout)
	if err != nil {
		return nil, err
	}
	s := statusOf(l, st)
	return &s, nil
}

func serviceStatus(ctx context.Context, o ServiceOptions) (*ServiceStatus, error) {
	l, err := existing(o)
	if err != nil {
		return nil, err
	}
	st, err := chroot.ReadState(l.Dir())
	if err != nil {
		return nil, err
	}
	s := statusOf(l, st)
	return &s, nil
}

// removeService stops the service, kills anything still running inside
// the root, unmounts every mount below it and deletes DEST/NAME.
func removeService(ctx context.Context, o ServiceOptions) (*ServiceStatus, error) {
	l, err := existing(o)
	if err != nil {
		return nil, err
	}
	if _, err := stopService(ctx, o); err != nil {
		return nil, err
	}
	removeUnit(ctx, l)
	if err := killInside(l.Root()); err != nil {
		return nil, err
	}
	if err := unmountBelow(l.Dir()); err != nil {
		return nil, err
	}
	dest, err := openExistingRoot(l.Dest)
	if err != nil {
		return nil, err
	}
	defer dest.Close()
	if err := dest.Remove("/" + l.Name); err != nil {
		return nil, fmt.Errorf("remove %s: %w", l.Dir(), err)
	}
	return &ServiceStatus{Name: l.Name, Root: l.Root(), Status: "removed"}, nil
}

// killInside SIGKILLs every process whose root or working directory is at
// or below root.
func killInside(root string) error {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	for _, e := range ents {
		pid := 0
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil || pid <= 1 || pid == os.Getpid() {
			continue
		}
		for _, link := range []string{"root", "cwd"} {
			t, err := os.Readlink(fmt.Sprintf("/proc/%d/%s", pid, link))
			if err == nil && (t == root || strings.HasPrefix(t, root+"/")) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				break
			}
		}
	}
	return nil
}

// unmountBelow detaches every mount at or below dir, deepest first, and
// fails if any is left (deleting through a mount would delete the mounted
// file system's files).
func unmountBelow(dir string) error {
	for try := 0; try < 3; try++ {
		mounts := mountsBelow(dir)
		if len(mounts) == 0 {
			return nil
		}
		for i := len(mounts) - 1; i >= 0; i-- {
			_ = unix.Unmount(mounts[i], unix.MNT_DETACH)
		}
	}
	if left := mountsBelow(dir); len(left) > 0 {
		return fmt.Errorf("could not unmount %s", strings.Join(left, ", "))
	}
	return nil
}

// mountsBelow lists mount points at or below dir in this mount namespace,
// in mount order.
func mountsBelow(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

var errNoSystemd = errors.New("systemd is not running on the target")
