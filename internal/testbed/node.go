package testbed

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// hostPath is PATH for programs run inside a host.
const hostPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Node is one host of the bed.
type Node struct {
	// Name is "old", "new" or "client".
	Name string
	// NetNS is the network namespace, e.g. "mtb7-old" (`ip netns exec` works too,
	// but only gives the network view; use Exec for the whole host).
	NetNS string
	// Hostname is what `hostname` prints inside the host (same as NetNS).
	Hostname string
	// Addr is the host's IPv4 address on the bridge.
	Addr string
	// Dir is the host's directory in the bed's Dir: sshd config and keys, logs.
	Dir string
	// HostKey is the sshd host key (nil without sshd).
	HostKey ssh.PublicKey

	bed     *Bed
	ssh     bool
	sshd    *Proc
	init    *exec.Cmd
	initPid int
	initErr chan error
}

// SSHSpec is the host spec for migrate, "ssh://root@ADDR:22".
func (n *Node) SSHSpec() string { return "ssh://root@" + n.Addr + ":22" }

// SSHD is the host's sshd process (nil without sshd).
func (n *Node) SSHD() *Proc { return n.sshd }

// Pid is the host init's PID as seen from the root namespace (PID 1 inside).
func (n *Node) Pid() int { return n.initPid }

// Path maps an absolute path inside the host to a path the test process
// can open: /proc/PID/root/... sees the host's private mounts.
func (n *Node) Path(p string) string {
	return filepath.Join(fmt.Sprintf("/proc/%d/root", n.initPid), p)
}

// WriteFile writes a file inside the host (through Path), creating parent
// directories.
func (n *Node) WriteFile(t TB, p string, data []byte, mode os.FileMode) {
	t.Helper()
	hp := n.Path(p)
	if err := os.MkdirAll(filepath.Dir(hp), 0o755); err != nil {
		t.Fatalf("testbed: %s: %v", n.Name, err)
	}
	if err := os.WriteFile(hp, data, mode); err != nil {
		t.Fatalf("testbed: %s: %v", n.Name, err)
	}
}

// ReadFile reads a file inside the host.
func (n *Node) ReadFile(p string) ([]byte, error) { return os.ReadFile(n.Path(p)) }

// Stat stats a file inside the host.
func (n *Node) Stat(p string) (os.FileInfo, error) { return os.Stat(n.Path(p)) }

// Command returns a command that runs argv inside the host: its network,
// mount, UTS, IPC and PID namespaces, working directory /. Cancelling ctx
// kills the whole process group.
func (n *Node) Command(ctx context.Context, argv ...string) *exec.Cmd {
	nsenter, _ := lookPath("nsenter")
	args := append([]string{"-t", fmt.Sprint(n.initPid), "-a", "--"}, argv...)
	cmd := exec.CommandContext(ctx, nsenter, args...)
	cmd.Dir = "/"
	cmd.Env = hostEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

func hostEnv() []string {
	env := []string{"PATH=" + hostPath, "LANG=C.UTF-8"}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PATH=") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// Exec runs argv inside the host and returns its stdout. A failure's error
// carries the exit status and stderr.
func (n *Node) Exec(ctx context.Context, argv ...string) ([]byte, error) {
	cmd := n.Command(ctx, argv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s: %s: %w: %s", n.Name, strings.Join(argv, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}

// MustExec is Exec with a one-minute timeout that fails the test on error.
func (n *Node) MustExec(t TB, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := n.Exec(ctx, argv...)
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	return string(out)
}

// initScript runs as PID 1 of the host's new PID namespace, inside its
// network namespace and a new mount, UTS and IPC namespace. Its arguments:
// hostname, address/24, tini, fstab, then the private directories. It sets
// the hostname, creates the mount points, mounts a fresh /proc, then
// everything in the host's fstab (the bed's /etc/hosts, the host's
// /etc/hostname, the private tmpfs) in one go (`mount -a` would skip /proc
// as already mounted), configures the network, reports on fd 3 and
// becomes tini, which reaps orphans until it is killed. Few processes: a
// host comes up in tens of milliseconds.
const initScript = `set -e
mount --make-rprivate /
echo "$1" >/proc/sys/kernel/hostname
addr=$2 tini=$3 fstab=$4
shift 4
mkdir -p "$@"
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -a -T "$fstab"
ip -batch - <<EOF
addr add $addr dev eth0
link set lo up
link set eth0 up
EOF
echo ready >&3
exec 3>&- </dev/null
exec "$tini" -- sleep infinity
`

// writeFstab writes the mounts of the host init.
func (n *Node) writeFstab(private []privateDir) (string, error) {
	hostname := filepath.Join(n.Dir, "hostname")
	if err := os.WriteFile(hostname, []byte(n.Hostname+"\n"), 0o644); err != nil {
		return "", err
	}
	esc := strings.NewReplacer(" ", `\040`, "\t", `\011`, "\n", `\012`, `\`, `\134`)
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s /etc/hosts none bind 0 0\n", esc.Replace(filepath.Join(n.bed.Dir, "hosts")))
	fmt.Fprintf(&sb, "%s /etc/hostname none bind 0 0\n", esc.Replace(hostname))
	for _, d := range private {
		fmt.Fprintf(&sb, "testbed %s tmpfs mode=0755,nosuid,nodev 0 0\n", esc.Replace(d.path))
	}
	fstab := filepath.Join(n.Dir, "fstab")
	return fstab, os.WriteFile(fstab, []byte(sb.String()), 0o644)
}

// startInit starts the host init and waits until its mounts are in place,
// then fills each private directory.
func (n *Node) startInit(private []privateDir) error {
	ip, err := lookPath("ip")
	if err != nil {
		return err
	}
	tini, err := lookPath("tini")
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(n.Dir, "init.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	fstab, err := n.writeFstab(private)
	if err != nil {
		return err
	}
	args := []string{"netns", "exec", n.NetNS, "/bin/sh", "-c", initScript, "init",
		n.Hostname, n.Addr + "/24", tini, fstab}
	for _, d := range private {
		args = append(args, d.path)
	}
	cmd := exec.Command(ip, args...)
	cmd.Dir = "/"
	cmd.Env = hostEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC,
	}
	if os.Getenv("MIGRATE_TESTBED_KEEP") != "1" {
		// If the test process dies, so does the host (and its PID
		// namespace). A kept bed must outlive the test process.
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("start host init of %s: %w", n.Name, err)
	}
	n.init, n.initPid = cmd, cmd.Process.Pid
	n.initErr = make(chan error, 1)
	go func() { n.initErr <- cmd.Wait() }()
	r.SetReadDeadline(time.Now().Add(20 * time.Second))
	line, _ := bufio.NewReader(r).ReadString('\n')
	if line != "ready\n" {
		log, _ := os.ReadFile(logf.Name())
		return fmt.Errorf("host init of %s did not come up: %s", n.Name, bytes.TrimSpace(log))
	}
	for _, d := range private {
		if err := n.fillPrivate(d); err != nil {
			return fmt.Errorf("%s: private %s: %w", n.Name, d.path, err)
		}
	}
	return nil
}

// stopInit kills the host init, which takes every process of the host's
// PID namespace with it, and waits for it.
func (n *Node) stopInit() {
	if n.init == nil {
		return
	}
	syscall.Kill(n.initPid, syscall.SIGKILL)
	select {
	case <-n.initErr:
	case <-time.After(10 * time.Second):
	}
	n.init = nil
}

func writeFile(t TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatalf("testbed: %v", err)
	}
}
