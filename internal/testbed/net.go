package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/migrate-tool/migrate/internal/procstat"
)

// LockDir holds one lock file per subnet index.
const LockDir = "/run/migrate-testbed"

const netnsDir = "/run/netns"

// prefixOf is the name prefix of bed index i.
func prefixOf(i int) string { return fmt.Sprintf("mtb%d-", i) }

// rootLink is the root-namespace end of the veth to the bridge.
func rootLink(i int) string { return prefixOf(i) + "host" }

var nsName = regexp.MustCompile(`^mtb([0-9]{1,3})-(lan|old|new|client)$`)

var sweepOnce sync.Once

// claimSubnet takes the first free subnet index, tearing down leftovers of
// a crashed run on it first. The flock is held until release.
func (b *Bed) claimSubnet() error {
	if err := os.MkdirAll(LockDir, 0o755); err != nil {
		return err
	}
	sweepOnce.Do(sweepStale)
	start := os.Getpid() % 254
	for k := range 254 {
		i := (start+k)%254 + 1
		f, ok, err := tryLock(i)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if err := teardown(i); err != nil {
			unlock(f)
			return fmt.Errorf("remove leftovers of %s: %w", prefixOf(i), err)
		}
		if subnetInUse(i) {
			unlock(f)
			continue
		}
		fmt.Fprintf(f, "%d %s\n", os.Getpid(), time.Now().UTC().Format(time.RFC3339))
		b.Index, b.Prefix, b.lock = i, prefixOf(i), f
		b.Subnet = fmt.Sprintf("10.231.%d.0/24", i)
		b.RootAddr = b.Addr(RootHost)
		return nil
	}
	return errors.New("no free subnet in 10.231.1.0-10.231.254.0 (254 beds in use?)")
}

func (b *Bed) release() {
	if b.lock != nil {
		unlock(b.lock)
		b.lock = nil
	}
}

// tryLock takes the lock of index i without waiting. ok is false when
// another live process holds it.
func tryLock(i int) (f *os.File, ok bool, err error) {
	f, err = os.OpenFile(filepath.Join(LockDir, fmt.Sprintf("%d.lock", i)), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, false, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("flock %s: %w", f.Name(), err)
	}
	// The lock file records its holder (pid and start) for people
	// looking at a stuck machine; the flock itself is the truth.
	f.Truncate(0)
	return f, true, nil
}

func unlock(f *os.File) {
	f.Truncate(0)
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	f.Close()
}

// sweepStale tears down the namespaces of every bed whose lock is free:
// their owner died without cleaning up.
func sweepStale() {
	entries, _ := os.ReadDir(netnsDir)
	seen := map[int]bool{}
	for _, e := range entries {
		m := nsName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		i, _ := strconv.Atoi(m[1])
		if i < 1 || i > 254 || seen[i] {
			continue
		}
		seen[i] = true
		if f, ok, err := tryLock(i); err == nil && ok {
			teardown(i)
			unlock(f)
		}
	}
}

// subnetInUse reports whether an interface of the root namespace already
// has an address in 10.231.i.0/24 (a bed set up by hand, say).
func subnetInUse(i int) bool {
	_, subnet, _ := net.ParseCIDR(fmt.Sprintf("10.231.%d.0/24", i))
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && subnet.Contains(ipn.IP) {
			return true
		}
	}
	return false
}

// setupNetwork creates the namespaces, the bridge (in its own namespace, so
// the root firewall never sees bed traffic), one veth per host and the
// root-side veth. Host addresses are configured by each host's init.
func (b *Bed) setupNetwork() error {
	lan := b.Prefix + "lan"
	root := []string{"netns add " + lan}
	for _, n := range b.Nodes() {
		root = append(root, "netns add "+n.NetNS)
	}
	root = append(root,
		fmt.Sprintf("link add %s type veth peer name host netns %s", rootLink(b.Index), lan),
		fmt.Sprintf("addr add %s/24 dev %s", b.RootAddr, rootLink(b.Index)),
		fmt.Sprintf("link set %s up", rootLink(b.Index)),
	)
	if err := ipBatch("", root); err != nil {
		return err
	}
	cmds := []string{"link add br0 type bridge", "link set br0 up", "link set host master br0 up"}
	for _, n := range b.Nodes() {
		cmds = append(cmds,
			fmt.Sprintf("link add %s type veth peer name eth0 netns %s", n.Name, n.NetNS),
			fmt.Sprintf("link set %s master br0 up", n.Name))
	}
	return ipBatch(lan, cmds)
}

// ipBatch runs `ip -batch -` (in netns ns unless empty).
func ipBatch(ns string, cmds []string) error {
	args := []string{"-batch", "-"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	ip, err := lookPath("ip")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ip, args...)
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// teardown kills every process in the namespaces of bed index i and
// deletes them and the root-side link. Missing pieces are fine.
func teardown(i int) error {
	p := prefixOf(i)
	var names []string
	for _, h := range []string{"old", "new", "client", "lan"} {
		if _, err := os.Stat(filepath.Join(netnsDir, p+h)); err == nil {
			names = append(names, p+h)
		}
	}
	if len(names) > 0 {
		if err := killNetnsProcs(names); err != nil {
			return err
		}
	}
	if _, err := net.InterfaceByName(rootLink(i)); err == nil {
		if err := ipBatch("", []string{"link del " + rootLink(i)}); err != nil {
			return err
		}
	}
	if len(names) == 0 {
		return nil
	}
	var cmds []string
	for _, n := range names {
		cmds = append(cmds, "netns del "+n)
	}
	return ipBatch("", cmds)
}

// killNetnsProcs SIGKILLs every process whose network namespace is one of
// the named ones (what `ip netns pids` lists) and waits until they are
// gone. Killing a host init takes its whole PID namespace with it.
func killNetnsProcs(names []string) error {
	want := map[[2]uint64]bool{}
	for _, n := range names {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(netnsDir, n), &st); err == nil {
			want[[2]uint64{st.Dev, st.Ino}] = true
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := netnsPids(want)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v in %v survive SIGKILL", pids, names)
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func netnsPids(want map[[2]uint64]bool) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) != nil {
			continue
		}
		if want[[2]uint64{st.Dev, st.Ino}] && procstat.Alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// lookPath finds a program on PATH or in the sbin directories, which a
// non-login root shell may lack on PATH.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH or in /usr/sbin, /sbin", name)
}
