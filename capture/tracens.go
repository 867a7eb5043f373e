package capture

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The traced start-up's namespaces are set up by this binary itself, run
// again (/proc/self/exe) under the name traceInitName as the first process
// of new mount, network, PID, IPC and UTS namespaces. It mounts the
// overlays with mount(2) and starts strace chrooted into them: no unshare,
// sh, mount, mkdir or chroot processes, each a few milliseconds of CPU that
// the compression running meanwhile would rather have.
const traceInitName = "migrate-trace-init"

func init() {
	if len(os.Args) == 2 && os.Args[0] == traceInitName {
		os.Exit(traceInit(os.Args[1]))
	}
}

// traceSetup is what the trace's first process is told (as JSON in its
// only argument).
type traceSetup struct {
	Scratch string   `json:"scratch"` // a private tmpfs goes here: the overlays' upper layers and the new root
	Out     string   `json:"out"`     // strace's output directory, seen at /.migrate-trace in the new root
	Mounts  []string `json:"mounts"`  // real mount points to cover with overlays, parents first
	Addrs   []string `json:"addrs"`   // the live service's listen addresses, put on lo
	Strace  string   `json:"strace"`
	Seccomp bool     `json:"seccomp"` // give strace --seccomp-bpf
	Argv    []string `json:"argv"`
	Cwd     string   `json:"cwd"`
}

// traceOutName is where the new root sees traceSetup.Out.
const traceOutName = "/.migrate-trace"

// straceArgs is strace's command line: follow forks (-f) with a file per
// process (-ff), stop the tracees only at the traced calls when seccomp
// allows (--seccomp-bpf, strace 5.3 and later), never be interrupted by
// the signals the start-up sends (-I1).
func (s *traceSetup) straceArgs() []string {
	args := []string{s.Strace, "-f"}
	if s.Seccomp {
		args = append(args, "--seccomp-bpf")
	}
	args = append(args, "-I1", "-qq", "-s", "512", "-ff", "-o", traceOutName+"/t",
		"-e", "trace=%file,%process,chdir,fchdir", "--")
	return append(args, s.Argv...)
}

// startTraceInit starts the trace's first process in new namespaces; its
// stdin is stop: closing it ends the trace (see traceInit).
func startTraceInit(s *traceSetup, env []string) (cmd *exec.Cmd, stop *os.File, stderr *strings.Builder, err error) {
	arg, err := json.Marshal(s)
	if err != nil {
		return nil, nil, nil, err
	}
	cmd = exec.Command("/proc/self/exe")
	cmd.Args = []string{traceInitName, string(arg)}
	cmd.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWNET | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS,
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, err
	}
	defer r.Close()
	stderr = &strings.Builder{}
	cmd.Stdin, cmd.Stderr = r, stderr
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, nil, nil, fmt.Errorf("traced start-up: %w", err)
	}
	return cmd, w, stderr, nil
}

// traceInit is the trace's first process (PID 1 of its namespace): it sets
// up the namespace, runs strace and reaps every process orphaned to it,
// until strace ends or its stdin closes; then it stops strace and leaves,
// which ends every process left in the namespace. A setup step that fails
// is one line on stderr and exit status 1.
func traceInit(arg string) int {
	var s traceSetup
	if err := json.Unmarshal([]byte(arg), &s); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", traceInitName, err)
		return 2
	}
	// Before any child exists: a SIGCHLD is never missed.
	sigchld := make(chan os.Signal, 1)
	signal.Notify(sigchld, syscall.SIGCHLD)
	root, err := s.mountAll()
	if err == nil {
		err = s.network()
	}
	var pid int
	if err == nil {
		pid, err = s.startStrace(root)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	stop := make(chan struct{})
	go func() {
		var b [1]byte
		os.Stdin.Read(b[:]) // returns when the capture closes its end (or dies)
		close(stop)
	}()
	var killed <-chan time.Time
	for {
		select {
		case <-sigchld:
		case <-stop:
			syscall.Kill(pid, syscall.SIGTERM)
			killed, stop = time.After(5*time.Second), nil
			continue
		case <-killed:
			return 0 // strace ignores SIGTERM: leaving kills it
		}
		if reap(pid) {
			return 0
		}
	}
}

// reap collects every exited child; it reports whether pid was among them.
func reap(pid int) bool {
	done := false
	for {
		var ws unix.WaitStatus
		p, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if p <= 0 || err != nil {
			return done
		}
		done = done || p == pid
	}
}

// mountAll makes every mount private, covers each real file system with an
// overlay in a private tmpfs and returns the new root: fresh /proc,
// /dev and /sys bound, strace's output directory at traceOutName. An
// overlay that fails is said on stderr and left out (the start-up then
// fails at what it needs from there); anything else fails the setup.
func (s *traceSetup) mountAll() (string, error) {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return "", fmt.Errorf("make mounts private: %w", err)
	}
	if err := unix.Mount("migrate-trace", s.Scratch, "tmpfs", 0, "mode=0700"); err != nil {
		return "", fmt.Errorf("mount tmpfs on %s: %w", s.Scratch, err)
	}
	root := filepath.Join(s.Scratch, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return "", err
	}
	for i, mp := range s.Mounts {
		upper, work := filepath.Join(s.Scratch, fmt.Sprintf("u%d", i)), filepath.Join(s.Scratch, fmt.Sprintf("w%d", i))
		if err := errors.Join(os.Mkdir(upper, 0o755), os.Mkdir(work, 0o755)); err != nil {
			return "", err
		}
		opts := "lowerdir=" + overlayPath(mp) + ",upperdir=" + overlayPath(upper) + ",workdir=" + overlayPath(work)
		if err := unix.Mount("migrate-trace", filepath.Join(root, mp), "overlay", 0, opts); err != nil {
			fmt.Fprintf(os.Stderr, "migrate: overlay on %s failed: %v\n", mp, err)
		}
	}
	if err := unix.Mount("proc", filepath.Join(root, "proc"), "proc", 0, ""); err != nil {
		return "", fmt.Errorf("mount /proc in the trace's root: %w", err)
	}
	dev := filepath.Join(root, "dev")
	if err := unix.Mount("/dev", dev, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return "", fmt.Errorf("bind /dev into the trace's root: %w", err)
	}
	if err := unix.Mount("", dev, "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return "", fmt.Errorf("make the trace's /dev a slave: %w", err)
	}
	unix.Mount("/sys", filepath.Join(root, "sys"), "", unix.MS_BIND|unix.MS_REC, "") // optional: some start-ups read it
	out := filepath.Join(root, traceOutName)
	if err := os.MkdirAll(out, 0o700); err != nil {
		return "", err
	}
	if err := unix.Mount(s.Out, out, "", unix.MS_BIND, ""); err != nil {
		return "", fmt.Errorf("bind the trace's output directory: %w", err)
	}
	return root, nil
}

// overlayPath escapes the characters overlayfs's mount options give a
// meaning to (option and layer separators).
func overlayPath(p string) string {
	return strings.NewReplacer(`\`, `\\`, `,`, `\,`, `:`, `\:`).Replace(p)
}

// network brings up lo and, if the live service listens on other
// addresses, puts them on lo too, so that binding them succeeds (one ip
// process; -force goes on after an error). lo rather than a dummy
// interface: it needs no kernel module, and the namespace has no other
// link for packets to leave by anyway.
func (s *traceSetup) network() error {
	if err := linkUp("lo"); err != nil {
		return fmt.Errorf("bring up lo in the trace's namespace: %w", err)
	}
	if batch := addrBatch(s.Addrs); batch != "" {
		cmd := exec.Command("ip", "-force", "-batch", "-")
		cmd.Stdin = strings.NewReader(batch)
		cmd.Run() // a failure shows as the service failing to bind
	}
	return nil
}

// linkUp sets the IFF_UP flag of the interface name.
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// addrBatch is the `ip -batch` input that puts addrs on lo; "" if none
// needs it (loopback, any, not an IP).
func addrBatch(addrs []string) string {
	var b strings.Builder
	for _, a := range addrs {
		if ip := netip(a); ip != "" {
			b.WriteString("addr add " + ip + " dev lo\n")
		}
	}
	return b.String()
}

// startStrace starts strace chrooted into root, in the service's working
// directory (/ if the new root lacks it), stdin and stdout /dev/null,
// stderr into the output directory.
func (s *traceSetup) startStrace(root string) (int, error) {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer null.Close()
	errf, err := os.Create(filepath.Join(s.Out, "stderr"))
	if err != nil {
		return 0, err
	}
	defer errf.Close()
	cwd := s.Cwd
	if fi, err := os.Stat(filepath.Join(root, cwd)); cwd == "" || err != nil || !fi.IsDir() {
		cwd = "/"
	}
	pid, err := syscall.ForkExec(s.Strace, s.straceArgs(), &syscall.ProcAttr{
		Dir:   cwd,
		Env:   os.Environ(),
		Files: []uintptr{null.Fd(), null.Fd(), errf.Fd()},
		Sys:   &syscall.SysProcAttr{Chroot: root},
	})
	if err != nil {
		return 0, fmt.Errorf("start strace in the trace's root: %w", err)
	}
	return pid, nil
}
