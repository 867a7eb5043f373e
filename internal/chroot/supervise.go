package chroot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/migrate-tool/migrate/internal/procstat"
)

// Exe is the binary re-executed as supervisor and init; its first
// argument must be SuperviseArg (cmd wires "migrate supervise").
var Exe = "/proc/self/exe"

// Arguments understood by the re-executed binary.
const (
	SuperviseArg = "supervise"
	InitFlag     = "--init"
)

// Launch writes spec into spec.Dir and starts the supervisor in its own
// session, detached from the caller. It returns at once; use Wait for the
// service to come up. The supervisor is reaped by a goroutine so that a
// long-lived caller does not keep zombies.
func Launch(spec *Spec) error {
	if len(spec.Start) == 0 {
		return errors.New("no start command recorded")
	}
	if st, err := ReadState(spec.Dir); err == nil && st.Alive() {
		return fmt.Errorf("service %s is already running (supervisor pid %d)", spec.Name, st.SupervisorPID)
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	sp := filepath.Join(spec.Dir, specFile)
	if err := os.WriteFile(sp, b, 0o600); err != nil {
		return fmt.Errorf("write service spec: %w", err)
	}
	// The log is truncated per start so its tail is this start's output.
	if err := os.WriteFile(filepath.Join(spec.Dir, LogFile), nil, 0o640); err != nil {
		return fmt.Errorf("create service log: %w", err)
	}
	// The supervisor waits for EOF on fd 3 so that the "starting" state
	// written here never overwrites what it records.
	gate, release, err := os.Pipe()
	if err != nil {
		return err
	}
	defer release.Close()
	cmd := exec.Command(Exe, SuperviseArg, sp)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	cmd.ExtraFiles = []*os.File{gate}
	err = cmd.Start()
	gate.Close()
	if err != nil {
		return fmt.Errorf("start supervisor: %w", err)
	}
	go cmd.Wait()
	return writeState(spec.Dir, State{Status: StatusStarting, SupervisorPID: cmd.Process.Pid})
}

// Supervise is the supervisor's main: it starts init in new namespaces,
// records the state, forwards SIGTERM/SIGINT/SIGHUP to it and records how
// it ended. It returns the exit code for the supervisor process.
func Supervise(specPath string) int {
	if gate := os.NewFile(3, "gate"); gate != nil {
		_, _ = io.Copy(io.Discard, gate)
		gate.Close()
	}
	spec, err := ReadSpec(specPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "migrate supervise:", err)
		return 1
	}
	log, err := os.OpenFile(filepath.Join(spec.Dir, LogFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return 1
	}
	defer log.Close()
	fail := func(err error) int {
		fmt.Fprintf(log, "migrate: %v\n", err)
		_ = writeState(spec.Dir, State{Status: StatusExited, ExitCode: -1, Exited: time.Now()})
		return 1
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	cmd := exec.Command(Exe, SuperviseArg, InitFlag, specPath)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC,
		Pdeathsig:  syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("start %s in new namespaces: %w", spec.Name, err))
	}
	st := State{Status: StatusRunning, SupervisorPID: os.Getpid(), InitPID: cmd.Process.Pid, Started: time.Now()}
	if err := writeState(spec.Dir, st); err != nil {
		_ = cmd.Process.Kill()
		return fail(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case sig := <-sigs:
			st.Stopping = true
			_ = writeState(spec.Dir, st)
			_ = cmd.Process.Signal(sig)
		case <-done:
			ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
			st.Status, st.Exited, st.ExitCode = StatusExited, time.Now(), ws.ExitStatus()
			if ws.Signaled() {
				st.Signal = ws.Signal().String()
			}
			if cur, err := ReadState(spec.Dir); err == nil && cur.Stopping {
				st.Stopping = true
			}
			if st.Stopping {
				st.Status = StatusStopped
			}
			_ = writeState(spec.Dir, st)
			return 0
		}
	}
}

// Init is the main of PID 1 in the service's namespaces.
func Init(specPath string) int {
	spec, err := ReadSpec(specPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "migrate init:", err)
		return 1
	}
	if err := setupNamespace(spec); err != nil {
		fmt.Fprintf(os.Stderr, "migrate: set up %s: %v\n", spec.Name, err)
		return 127
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	cmd := exec.Command(spec.Start[0], spec.Start[1:]...)
	cmd.Path = spec.Start[0]
	cmd.Err = nil // argv[0] is a path inside the root, not looked up here
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Dir = "/"
	cmd.Env = spec.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: spec.Root}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "migrate: start %s in %s: %v\n", strings.Join(spec.Start, " "), spec.Root, err)
		return 127
	}
	main := cmd.Process.Pid
	go func() {
		for sig := range sigs {
			_ = cmd.Process.Signal(sig)
		}
	}()
	// Reap everything; leave when the service itself is gone.
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 1
		}
		if pid == main {
			if ws.Signaled() {
				return 128 + int(ws.Signal())
			}
			return ws.ExitStatus()
		}
	}
}

// setupNamespace makes every mount private, mounts /proc inside the root
// (through a descriptor opened without following symlinks) and sets the
// hostname.
func setupNamespace(spec *Spec) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	rfd, err := unix.Open(spec.Root, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open root: %w", err)
	}
	defer unix.Close(rfd)
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	pfd, err := unix.Openat2(rfd, "proc", &how)
	if err != nil {
		return fmt.Errorf("open %s/proc: %w", spec.Root, err)
	}
	defer unix.Close(pfd)
	target := "/proc/self/fd/" + strconv.Itoa(pfd)
	if err := unix.Mount("proc", target, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount proc: %w", err)
	}
	if err := mountDev(rfd); err != nil {
		return err
	}
	if spec.Hostname != "" {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return fmt.Errorf("set hostname: %w", err)
		}
	}
	return nil
}

// Devices are the device nodes every service gets, by path inside the
// root, with their major and minor numbers.
var Devices = map[string][2]uint32{
	"/dev/null":    {1, 3},
	"/dev/zero":    {1, 5},
	"/dev/full":    {1, 7},
	"/dev/random":  {1, 8},
	"/dev/urandom": {1, 9},
	"/dev/tty":     {5, 0},
}

// mountDev mounts a small tmpfs on the root's /dev, private to the
// service's mount namespace, and makes the standard device nodes in it
// with mknod. The root's own file system may be mounted nodev, and the
// host's /dev is never bound in.
func mountDev(rfd int) error {
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	dfd, err := unix.Openat2(rfd, "dev", &how)
	if err != nil {
		return fmt.Errorf("open /dev of the root: %w", err)
	}
	defer unix.Close(dfd)
	if err := unix.Mount("tmpfs", "/proc/self/fd/"+strconv.Itoa(dfd), "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=1m"); err != nil {
		return fmt.Errorf("mount /dev: %w", err)
	}
	dev, err := unix.Openat2(rfd, "dev", &unix.OpenHow{Flags: unix.O_DIRECTORY | unix.O_RDONLY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return fmt.Errorf("open the new /dev: %w", err)
	}
	defer unix.Close(dev)
	old := unix.Umask(0)
	defer unix.Umask(old)
	for p, d := range Devices {
		if err := unix.Mknodat(dev, strings.TrimPrefix(p, "/dev/"), unix.S_IFCHR|0o666, int(unix.Mkdev(d[0], d[1]))); err != nil {
			return fmt.Errorf("mknod %s: %w", p, err)
		}
	}
	for _, d := range [][2]string{{"pts", "0755"}, {"shm", "1777"}, {"mqueue", "0755"}} {
		mode, _ := strconv.ParseUint(d[1], 8, 32)
		if err := unix.Mkdirat(dev, d[0], uint32(mode)); err != nil {
			return fmt.Errorf("mkdir /dev/%s: %w", d[0], err)
		}
	}
	for _, l := range [][2]string{{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
		{"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"}} {
		if err := unix.Symlinkat(l[0], dev, l[1]); err != nil {
			return fmt.Errorf("symlink /dev/%s: %w", l[1], err)
		}
	}
	return nil
}

// Stop stops the service in dir: its recorded stop command run inside its
// namespaces, or SIGTERM; SIGKILL to the whole PID namespace after
// timeout. It waits for the supervisor to record the end.
func Stop(ctx context.Context, dir string, timeout time.Duration) (State, error) {
	st, err := ReadState(dir)
	if err != nil || !st.Alive() {
		return st, err
	}
	spec, err := ReadSpec(filepath.Join(dir, specFile))
	if err != nil {
		return st, err
	}
	ranStop := false
	if len(spec.Stop) > 0 {
		if pid := childOf(st.InitPID); pid > 0 {
			args := append([]string{"-t", strconv.Itoa(pid), "-m", "-u", "-i", "-p", "-r", "-w", "--"}, spec.Stop...)
			c := exec.CommandContext(ctx, "nsenter", args...)
			c.Env = spec.Env
			ranStop = c.Run() == nil
		}
	}
	if !ranStop {
		_ = syscall.Kill(st.SupervisorPID, syscall.SIGTERM)
	} else {
		st.Stopping = true
		_ = writeState(dir, st)
	}
	if end, ok := waitExit(ctx, dir, timeout); ok {
		return end, nil
	}
	_ = syscall.Kill(st.InitPID, syscall.SIGKILL)
	if end, ok := waitExit(ctx, dir, 5*time.Second); ok {
		return end, nil
	}
	return st, fmt.Errorf("service %s did not stop", spec.Name)
}

func waitExit(ctx context.Context, dir string, d time.Duration) (State, bool) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		st, err := ReadState(dir)
		if err == nil && !st.Alive() && !isSupervisor(st.SupervisorPID, dir) {
			return st, true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return State{}, false
}

// childOf returns the oldest child of pid (the service under init).
func childOf(pid int) int {
	if pid <= 0 {
		return 0
	}
	kids := procstat.Children(pid)
	if len(kids) == 0 {
		return 0
	}
	return slices.Min(kids)
}

func ppidOf(pid int) int {
	st, _ := procstat.Read(pid)
	return st.PPID
}

// ServicePID returns the host pid of the running service, or 0.
func ServicePID(st State) int {
	if !st.Alive() {
		return 0
	}
	return childOf(st.InitPID)
}
