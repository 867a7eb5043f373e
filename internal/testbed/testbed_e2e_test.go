//go:build e2e

package testbed

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/internal/procstat"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestHostsAreSeparate(t *testing.T) {
	bed := New(t, Options{})
	ctx := ctxT(t)
	for _, n := range bed.Nodes() {
		if got := strings.TrimSpace(n.MustExec(t, "hostname")); got != n.Hostname {
			t.Errorf("%s: hostname %q, want %q", n.Name, got, n.Hostname)
		}
		if got := n.MustExec(t, "getent", "hosts", "new"); !strings.HasPrefix(got, bed.New.Addr+" ") {
			t.Errorf("%s: new resolves to %q", n.Name, got)
		}
		if got := strings.TrimSpace(n.MustExec(t, "cat", "/etc/hostname")); got != n.Hostname {
			t.Errorf("%s: /etc/hostname %q", n.Name, got)
		}
		addr := n.MustExec(t, "ip", "-4", "-o", "addr", "show", "dev", "eth0")
		if !strings.Contains(addr, " "+n.Addr+"/24 ") {
			t.Errorf("%s: eth0 has %q, want %s/24", n.Name, addr, n.Addr)
		}
		// The PID namespace shows only the host's own processes: tini,
		// its sleep, sshd (and a child for a connection) maybe, and the
		// shell pipeline itself; the machine has many more.
		out := n.MustExec(t, "sh", "-c", "ls -d /proc/[0-9]* | wc -l; cat /proc/1/comm")
		var count int
		var init string
		fmt.Sscan(out, &count, &init)
		if count > 12 || init != "tini" {
			t.Errorf("%s: %d processes, init %q; want a handful under tini", n.Name, count, init)
		}
		for _, d := range []string{"/run/sshd", "/var/log/nginx", "/run/lock", "/srv", "/var/lib/migrate"} {
			if _, err := n.Stat(d); err != nil {
				t.Errorf("%s: %v", n.Name, err)
			}
		}
	}
	// /root is private with stock dotfiles; the mail spool is a private copy.
	if st, err := bed.Old.Stat("/root"); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("old's /root: %v %v", st, err)
	}
	if stock, err := os.ReadFile("/usr/share/base-files/dot.bashrc"); err == nil {
		if got, _ := bed.Old.ReadFile("/root/.bashrc"); string(got) != string(stock) {
			t.Error("old's /root/.bashrc is not Debian's stock one")
		}
	}
	if _, err := os.Stat("/var/spool/postfix/pid"); err == nil {
		if _, err := bed.Old.Stat("/var/spool/postfix/pid"); err != nil {
			t.Errorf("old's copy of /var/spool/postfix: %v", err)
		}
		bed.Old.WriteFile(t, "/var/spool/postfix/pid/testbed-probe", nil, 0o644)
		if _, err := os.Stat("/var/spool/postfix/pid/testbed-probe"); err == nil {
			t.Error("old's /var/spool/postfix is the machine's")
		}
	}
	// Private tmpfs: a file written in old's /srv is in neither new's nor the root's.
	bed.Old.WriteFile(t, "/srv/only-on-old", []byte("x"), 0o644)
	if _, err := bed.New.Exec(ctx, "test", "-e", "/srv/only-on-old"); err == nil {
		t.Error("new sees old's /srv")
	}
	if _, err := os.Stat("/srv/only-on-old"); err == nil {
		t.Error("the root namespace sees old's /srv")
	}
	if out := bed.Old.MustExec(t, "cat", "/srv/only-on-old"); out != "x" {
		t.Errorf("old reads %q from its own /srv", out)
	}
	// /var/log/nginx keeps the real directory's owner and mode.
	real, err1 := os.Stat("/var/log/nginx")
	priv, err2 := bed.Old.Stat("/var/log/nginx")
	if err1 == nil && err2 == nil {
		rs, ps := real.Sys().(*syscall.Stat_t), priv.Sys().(*syscall.Stat_t)
		if real.Mode() != priv.Mode() || rs.Uid != ps.Uid || rs.Gid != ps.Gid {
			t.Errorf("/var/log/nginx in old: %v %d:%d, real %v %d:%d", priv.Mode(), ps.Uid, ps.Gid, real.Mode(), rs.Uid, rs.Gid)
		}
	}
	// Hosts reach each other over the bridge.
	bed.New.StartNginx(t, NginxOptions{Port: 8080})
	out, err := bed.Client.Exec(ctx, "bash", "-c", "exec 3<>/dev/tcp/"+bed.New.Addr+"/8080; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3")
	if err != nil || !strings.Contains(string(out), "hello from "+bed.New.Hostname) {
		t.Errorf("client -> new:8080: %v %q", err, out)
	}
}

func TestSSHWithOpenSSHClient(t *testing.T) {
	RequireTools(t, "ssh")
	bed := New(t, Options{})
	for _, n := range []*Node{bed.Old, bed.New} {
		cmd := exec.Command("ssh", "-F", "/dev/null", "-i", bed.ClientKey,
			"-o", "UserKnownHostsFile="+bed.KnownHosts, "-o", "StrictHostKeyChecking=yes",
			"-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "root@"+n.Addr, "hostname; ls /srv")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		// The host's /root holds Debian's stock dotfiles, so nothing but
		// the command's own output comes back.
		if err != nil || strings.TrimSpace(string(out)) != n.Hostname {
			t.Errorf("ssh %s: %v: %q, stderr %q", n.Name, err, out, stderr.String())
		}
	}
	if _, err := os.Stat(bed.Client.Path("/run/sshd.pid")); err == nil {
		t.Error("client runs sshd without ClientSSH")
	}
}

func TestNginxAndProc(t *testing.T) {
	bed := New(t, Options{NoSSH: true})
	p := bed.Old.StartNginx(t, NginxOptions{Index: "old index\n"})
	resp, err := http.Get("http://" + bed.Old.Addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "old index\n" {
		t.Errorf("body %q", body)
	}
	// nginx's pid file lands in old's private /run, not the real one.
	if _, err := bed.Old.Stat("/run/nginx.pid"); err != nil {
		t.Errorf("pid file: %v", err)
	}
	if p.Pid() == 0 {
		t.Fatal("no pid")
	}
	if err := p.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", p.Pid())); err == nil {
		t.Errorf("nginx %d still there after Stop", p.Pid())
	}
	if _, err := http.Get("http://" + bed.Old.Addr + "/"); err == nil {
		t.Error("nginx still answers after Stop")
	}
}

// TestTwoBedsAndTeardown runs two beds at once, then checks that closing
// one removes its namespaces, links and processes and leaves the other.
func TestTwoBedsAndTeardown(t *testing.T) {
	a := New(t, Options{NoSSH: true})
	b := New(t, Options{NoSSH: true})
	if a.Subnet == b.Subnet || a.Prefix == b.Prefix {
		t.Fatalf("two beds share %s / %s", a.Subnet, a.Prefix)
	}
	pa := a.Old.StartNginx(t, NginxOptions{})
	b.Old.StartNginx(t, NginxOptions{})
	for _, bed := range []*Bed{a, b} {
		if err := WaitHTTP("http://"+bed.Old.Addr+"/", 5*time.Second, nil); err != nil {
			t.Errorf("%s: %v", bed.Prefix, err)
		}
	}
	var pids []int
	for _, n := range a.Nodes() {
		pids = append(pids, n.Pid())
	}
	pids = append(pids, pa.Pid())
	a.Close()
	for _, pid := range pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			t.Errorf("pid %d of %s survives teardown", pid, a.Prefix)
		}
	}
	for _, h := range []string{"lan", "old", "new", "client"} {
		if _, err := os.Stat(filepath.Join(netnsDir, a.Prefix+h)); err == nil {
			t.Errorf("namespace %s%s survives teardown", a.Prefix, h)
		}
	}
	if _, err := os.Stat("/sys/class/net/" + rootLink(a.Index)); err == nil {
		t.Errorf("link %s survives teardown", rootLink(a.Index))
	}
	if err := WaitHTTP("http://"+b.Old.Addr+"/", 5*time.Second, nil); err != nil {
		t.Errorf("the other bed broke: %v", err)
	}
}

// TestStaleLeftoversRemoved fakes a crashed run (namespaces, a process in
// one, the root link, no lock holder) and checks the sweep removes it.
func TestStaleLeftoversRemoved(t *testing.T) {
	Require(t)
	// A free index from the top of the range (beds claim from pid%254
	// upwards, so the top is rarely taken); its lock is let go, as a
	// crashed run's is.
	idx := 0
	for i := 254; i > 150 && idx == 0; i-- {
		f, ok, err := tryLock(i)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			unlock(f)
			idx = i
		}
	}
	if idx == 0 {
		t.Fatal("no free bed index in 151-254")
	}
	p := prefixOf(idx)
	if err := ipBatch("", []string{"netns add " + p + "lan", "netns add " + p + "old",
		"link add " + rootLink(idx) + " type veth peer name host netns " + p + "lan"}); err != nil {
		t.Fatal(err)
	}
	sleeper := exec.Command("ip", "netns", "exec", p+"old", "sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	go sleeper.Wait()
	var st syscall.Stat_t
	WaitFor(t, "the sleeper to enter the namespace", 5*time.Second, func() error {
		if err := syscall.Stat(filepath.Join(netnsDir, p+"old"), &st); err != nil {
			return err
		}
		if len(netnsPids(map[[2]uint64]bool{{st.Dev, st.Ino}: true})) == 0 {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	sweepStale()
	for _, h := range []string{"lan", "old"} {
		if _, err := os.Stat(filepath.Join(netnsDir, p+h)); err == nil {
			t.Errorf("stale %s%s not removed", p, h)
		}
	}
	if _, err := os.Stat("/sys/class/net/" + rootLink(idx)); err == nil {
		t.Errorf("stale link not removed")
	}
	time.Sleep(10 * time.Millisecond)
	if err := syscall.Kill(sleeper.Process.Pid, 0); err == nil && procstat.Alive(sleeper.Process.Pid) {
		t.Errorf("process in the stale namespace survives")
	}
}

// TestCrashedRunCleanedUp builds a bed in a child test process, SIGKILLs
// that process (as `go test -timeout` or the OOM killer would), and checks
// that the hosts die with it and the next sweep removes the namespaces.
func TestCrashedRunCleanedUp(t *testing.T) {
	if os.Getenv("TESTBED_CRASH_CHILD") == "1" {
		bed := New(t, Options{})
		fmt.Printf("BED %d %d %d\n", bed.Index, bed.Old.Pid(), bed.New.SSHD().Pid())
		time.Sleep(time.Minute)
		return
	}
	Require(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashedRunCleanedUp$", "-test.v")
	cmd.Env = append(os.Environ(), "TESTBED_CRASH_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var index, initPid, sshdPid int
	done := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if _, err := fmt.Sscanf(sc.Text(), "BED %d %d %d", &index, &initPid, &sshdPid); err == nil {
				done <- nil
				io.Copy(io.Discard, out)
				return
			}
		}
		done <- fmt.Errorf("child ended without a bed")
	}()
	select {
	case err := <-done:
		if err != nil {
			cmd.Process.Kill()
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("child did not build its bed in 30s")
	}
	cmd.Process.Kill()
	cmd.Wait()
	for _, pid := range []int{initPid, sshdPid} {
		WaitFor(t, fmt.Sprintf("pid %d to die with its test process", pid), 5*time.Second, func() error {
			if procstat.Alive(pid) {
				return fmt.Errorf("still running")
			}
			return nil
		})
	}
	p := prefixOf(index)
	if _, err := os.Stat(filepath.Join(netnsDir, p+"old")); err != nil {
		t.Fatalf("the crashed bed's namespace is already gone: %v", err)
	}
	sweepStale()
	for _, h := range []string{"lan", "old", "new", "client"} {
		if _, err := os.Stat(filepath.Join(netnsDir, p+h)); err == nil {
			t.Errorf("%s%s survives the sweep", p, h)
		}
	}
	if _, err := os.Stat("/sys/class/net/" + rootLink(index)); err == nil {
		t.Errorf("%s survives the sweep", rootLink(index))
	}
}
