// Package testbed builds a throw-away network of "hosts" on one machine for
// end-to-end tests: old, new and client are network namespaces on a bridge,
// each with its own mount, UTS, IPC and PID namespace (a "host init" started
// under tini), private tmpfs mounts for /run, /srv, /var/lib/migrate,
// /var/log, /root and the mail spools, and a real OpenSSH sshd on old and new with generated keys and a
// known_hosts file. The test runner reaches every host from the root
// namespace through a veth on the bridge.
//
// Every bed takes its own /24 out of 10.231.0.0/16 and a matching name
// prefix ("mtb7-"), claimed with flock on /run/migrate-testbed/<n>.lock, so
// several test processes can run beds at once. Leftovers of a crashed run
// (namespaces whose subnet lock nobody holds) are torn down before reuse.
//
// New skips the test when it is not run as root or a tool is missing; with
// MIGRATE_E2E_REQUIRE=1 in the environment it fails instead. See
// docs/testbed.md.
package testbed

import (
	"fmt"
	"github.com/migrate-tool/migrate/internal/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options shape a bed. The zero value gives old, new and client with sshd
// on old and new.
type Options struct {
	// NoSSH leaves sshd off on every host.
	NoSSH bool
	// ClientSSH also runs sshd on client (and lists it in KnownHosts).
	ClientSSH bool
	// PrivateDirs are extra directories that get a private tmpfs in every
	// host with the skeleton of the real directory (subdirectories and
	// symlinks with their owners and modes, no files), like /run.
	PrivateDirs []string
	// CopyDirs are extra directories that get a private tmpfs in every
	// host holding a copy of the real directory's contents (at most
	// 64 MiB), like /var/spool/postfix.
	CopyDirs []string
}

// /tmp, /etc and /usr stay shared with the test runner: tests hand files
// written to t.TempDir() to programs inside a host. See privateDirs for
// what each host has to itself.

// Host numbers inside the bed's /24.
const (
	OldHost    = 1
	NewHost    = 2
	ClientHost = 10
	// UnusedHost is an address in the subnet that no namespace holds:
	// connecting to it times out or fails with "no route to host".
	UnusedHost = 99
	RootHost   = 254
)

// Bed is one test network: three hosts plus the test runner.
type Bed struct {
	// Index is the third octet of the subnet, 1..254.
	Index int
	// Prefix starts the name of every namespace and root-side link, e.g. "mtb7-".
	Prefix string
	// Subnet is the bed's network, e.g. "10.231.7.0/24".
	Subnet string
	// RootAddr is the test runner's address on the bridge, e.g. "10.231.7.254".
	RootAddr string
	// Dir holds configs, keys and logs (a t.TempDir, visible inside the
	// hosts at the same path because /tmp is shared).
	Dir string

	Old, New, Client *Node

	// KnownHosts lists the sshd host keys of the hosts running sshd, by address.
	KnownHosts string
	// ClientKey is an ed25519 private key (OpenSSH format, no passphrase)
	// authorized for root on every sshd; ClientKey+".pub" is its public half.
	ClientKey string
	// SSHConfig is an ssh_config with a Host entry per sshd host, by
	// short name ("old", "new"): HostName, User root, Port 22,
	// IdentityFile ClientKey, UserKnownHostsFile KnownHosts.
	SSHConfig string

	t      TB
	lock   *os.File
	mu     sync.Mutex
	procs  []*Proc
	closed bool
}

// Nodes returns old, new and client.
func (b *Bed) Nodes() []*Node { return []*Node{b.Old, b.New, b.Client} }

// Addr returns the address of host number h in the bed's subnet.
func (b *Bed) Addr(h int) string { return fmt.Sprintf("10.231.%d.%d", b.Index, h) }

// UnusedAddr is an address inside the bed's subnet that no host holds.
func (b *Bed) UnusedAddr() string { return b.Addr(UnusedHost) }

// New builds a bed and registers its teardown with t.Cleanup. It skips
// (or, with MIGRATE_E2E_REQUIRE=1, fails) when the machine cannot run it.
func New(t TB, opts Options) *Bed {
	t.Helper()
	Require(t)
	private, err := privateDirs(opts)
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	start := time.Now()
	b := &Bed{t: t, Dir: t.TempDir()}
	if keep() {
		// A kept bed's configs and logs must outlive the test.
		dir, err := os.MkdirTemp("", "migrate-testbed-")
		if err != nil {
			t.Fatalf("testbed: %v", err)
		}
		b.Dir = dir
	}
	if err := b.claimSubnet(); err != nil {
		t.Fatalf("testbed: %v", err)
	}
	t.Cleanup(b.Close)
	b.Old = b.newNode("old", OldHost, !opts.NoSSH)
	b.New = b.newNode("new", NewHost, !opts.NoSSH)
	b.Client = b.newNode("client", ClientHost, !opts.NoSSH && opts.ClientSSH)
	var took [3]time.Duration
	steps := []func() error{
		func() error {
			if err := b.setupNetwork(); err != nil {
				return err
			}
			return b.writeHosts()
		},
		func() error { return parallel(b.Nodes(), func(n *Node) error { return n.startInit(private) }) },
		b.setupSSH,
	}
	for i, step := range steps {
		t0 := time.Now()
		if err := step(); err != nil {
			t.Fatalf("testbed: %v", err)
		}
		took[i] = time.Since(t0).Round(time.Millisecond)
	}
	t.Logf("testbed: %s up in %v (network %v, hosts %v, sshd %v; old %s, new %s, client %s; dir %s)",
		b.Subnet, time.Since(start).Round(time.Millisecond), took[0], took[1], took[2],
		b.Old.Addr, b.New.Addr, b.Client.Addr, b.Dir)
	return b
}

func (b *Bed) newNode(name string, h int, ssh bool) *Node {
	n := &Node{
		Name:     name,
		NetNS:    b.Prefix + name,
		Hostname: b.Prefix + name,
		Addr:     b.Addr(h),
		Dir:      filepath.Join(b.Dir, name),
		bed:      b,
		ssh:      ssh,
	}
	if err := os.MkdirAll(n.Dir, 0o755); err != nil {
		b.t.Fatalf("testbed: %v", err)
	}
	return n
}

// Close stops every process of the bed and removes its namespaces and
// links. It runs from t.Cleanup; calling it again does nothing.
func (b *Bed) Close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	procs := b.procs
	b.mu.Unlock()
	if b.t.Failed() {
		for _, p := range procs {
			if tail := p.tail(30); tail != "" {
				b.t.Logf("testbed: last lines of %s on %s (%s):\n%s", p.Name, p.node.Name, p.LogPath, tail)
			}
		}
	}
	if keep() && b.t.Failed() {
		b.keepUp()
		return
	}
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].kill()
	}
	for _, n := range b.Nodes() {
		if n != nil {
			n.stopInit()
		}
	}
	if err := teardown(b.Index); err != nil {
		b.t.Errorf("testbed: teardown %s: %v", b.Prefix, err)
	}
	b.release()
	if keep() {
		os.RemoveAll(b.Dir)
	}
}

func (b *Bed) addProc(p *Proc) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.procs = append(b.procs, p)
}

// parallel runs fn for every node at once and returns the first error.
func parallel(nodes []*Node, fn func(n *Node) error) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(n)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Unavailable skips the test because the machine lacks something it needs,
// or fails it when MIGRATE_E2E_REQUIRE=1 (as in CI), where a skipped e2e
// test would hide a broken setup.
func Unavailable(t TB, format string, args ...any) {
	t.Helper()
	testenv.Skip(t, fmt.Sprintf(format, args...))
}

// baseTools are needed by every bed.
var baseTools = []string{"ip", "nsenter", "tini", "mount", "hostname", "sleep", "sh"}

// Require checks that a bed can be built here: root, and the tools it runs.
// It is called by New; tests that need more call RequireTools.
func Require(t TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "the test bed needs root (network, mount and PID namespaces)")
	}
	RequireTools(t, baseTools...)
	if _, err := os.Stat(sshdPath); err != nil {
		Unavailable(t, "%s not found (apt-get install openssh-server)", sshdPath)
	}
}

// RequireTools skips (or fails, see Unavailable) unless every named program
// is on PATH or in /usr/sbin or /sbin.
func RequireTools(t TB, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if _, err := lookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		Unavailable(t, "missing tools: %s (see .ci/packages.d/)", strings.Join(missing, ", "))
	}
}

// writeHosts writes the /etc/hosts every host sees: the bed's hosts by
// hostname and short name, and the runner as "runner".
func (b *Bed) writeHosts() error {
	var sb strings.Builder
	sb.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	for _, n := range b.Nodes() {
		fmt.Fprintf(&sb, "%s\t%s %s\n", n.Addr, n.Hostname, n.Name)
	}
	fmt.Fprintf(&sb, "%s\t%shost runner\n", b.RootAddr, b.Prefix)
	return os.WriteFile(filepath.Join(b.Dir, "hosts"), []byte(sb.String()), 0o644)
}

// keep reports whether MIGRATE_TESTBED_KEEP=1 asks to keep failed beds.
func keep() bool { return os.Getenv("MIGRATE_TESTBED_KEEP") == "1" }

// keepTime is how long a kept bed stays reserved.
const keepTime = time.Hour

// keepUp leaves a failed test's bed running for inspection. A detached
// sleep inherits the subnet lock's open file, so the flock stays held (no
// sweep removes the bed) until it exits or is killed.
func (b *Bed) keepUp() {
	holder := exec.Command("sleep", fmt.Sprint(int(keepTime.Seconds())))
	holder.ExtraFiles = []*os.File{b.lock}
	holder.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	pid := 0
	if err := holder.Start(); err != nil {
		b.t.Logf("testbed: MIGRATE_TESTBED_KEEP=1: cannot hold the lock (%v); the next test run removes the bed", err)
	} else {
		pid = holder.Process.Pid
		fmt.Fprintf(b.lock, "kept by pid %d\n", pid)
		holder.Process.Release()
	}
	for _, n := range b.Nodes() {
		if n != nil && n.init != nil {
			b.t.Logf("testbed: MIGRATE_TESTBED_KEEP=1: %s (%s) left up: nsenter -t %d -a bash", n.Hostname, n.Addr, n.initPid)
		}
	}
	if pid != 0 {
		b.t.Logf("testbed: kept for %v, files in %s; kill %d (the lock holder), then scripts/testbed-clean removes it",
			keepTime, b.Dir, pid)
	}
}
