package transfer

import (
	"context"
	"github.com/migrate-tool/migrate/internal/testenv"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/migrate-tool/migrate/capture"
	"github.com/migrate-tool/migrate/internal/chroot"
)

// TestMain lets this test binary act as the supervisor and init, like
// "migrate supervise" does for the real binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == chroot.SuperviseArg {
		if os.Args[2] == chroot.InitFlag {
			os.Exit(chroot.Init(os.Args[3]))
		}
		os.Exit(chroot.Supervise(os.Args[2]))
	}
	os.Exit(m.Run())
}

// shellFS is a tiny root with dash, sleep and their libraries, taken from
// this machine.
func shellFS(t *testing.T, service string, start []string) *testFS {
	t.Helper()
	fs := newTestFS(service).dir("/usr").dir("/usr/bin").dir("/usr/lib").dir("/usr/lib/x86_64-linux-gnu").dir("/usr/lib64").
		entry(capture.Entry{Path: "/bin", Type: capture.TypeSymlink, Link: "usr/bin"}).
		entry(capture.Entry{Path: "/lib", Type: capture.TypeSymlink, Link: "usr/lib"}).
		entry(capture.Entry{Path: "/lib64", Type: capture.TypeSymlink, Link: "usr/lib64"}).
		dir("/etc").file("/etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\n"))
	for _, p := range []string{"/usr/bin/dash", "/usr/bin/sleep", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib64/ld-linux-x86-64.so.2"} {
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			testenv.Skip(t, err)
		}
		b, err := os.ReadFile(real)
		if err != nil {
			testenv.Skip(t, err)
		}
		fs.file(p, b)
		fs.m.Entries[len(fs.m.Entries)-1].Mode = 0o755
	}
	fs.entry(capture.Entry{Path: "/usr/bin/sh", Type: capture.TypeSymlink, Link: "dash"})
	fs.m.Start = start
	fs.m.Users = []capture.User{{Name: "www-data", UID: 33, GID: 33, Home: "/var/www", Shell: "/usr/sbin/nologin"}}
	fs.m.Groups = []capture.Group{{Name: "www-data", GID: 33}}
	fs.m.RuntimeDirs = []capture.Dir{{Path: "/run/svc", Mode: 0o750, UID: 33, GID: 33}}
	return fs
}

func TestServiceLifecycle(t *testing.T) {
	needRoot(t)
	fs := shellFS(t, "sh1", []string{"/bin/sh", "-c",
		"read h < /proc/sys/kernel/hostname; echo pid=$$ host=$h; echo x > /dev/null || exit 3; exec sleep 1000"})
	// A nodev file system, like the test bed's /srv: device nodes in the
	// root itself cannot be opened, the service's own /dev must work.
	dest := t.TempDir()
	if err := unix.Mount("tmpfs", dest, "tmpfs", unix.MS_NODEV|unix.MS_NOSUID, "size=64m"); err != nil {
		testenv.Skip(t, err)
	}
	t.Cleanup(func() { unix.Unmount(dest, unix.MNT_DETACH) })
	c := pipe(t)
	ctx := context.Background()
	if _, err := Ship(ctx, c, fs.write(t), Options{Dest: dest, NoReuse: true}); err != nil {
		t.Fatal(err)
	}
	o := ServiceOptions{Name: "sh1", Dest: dest}
	st, err := StartService(ctx, c, o)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != "running" || st.PID == 0 {
		t.Fatalf("after start: %+v", st)
	}
	l := Layout{Dest: dest, Name: "sh1"}
	// The service has its own PID namespace (a small pid there, another
	// one on the host) and its own hostname, the captured host's.
	waitFor(t, func() bool { return strings.Contains(chroot.LogTail(l.Dir(), 5), "host=old") })
	status := string(readFile(t, filepath.Join("/proc", itoa(st.PID), "status")))
	if !strings.Contains(status, "NSpid:\t"+itoa(st.PID)+"\t") || !strings.Contains(chroot.LogTail(l.Dir(), 5), "pid=") {
		t.Fatalf("not in its own PID namespace: %s", status)
	}
	if root, _ := os.Readlink(filepath.Join("/proc", itoa(st.PID), "root")); root != l.Root() {
		t.Fatalf("service root %q, want %q", root, l.Root())
	}
	if b := readFile(t, filepath.Join(l.Root(), "etc/passwd")); !strings.Contains(string(b), "www-data:x:33:33::/var/www:/usr/sbin/nologin\n") || !strings.HasPrefix(string(b), "root:x:0:0") {
		t.Fatalf("passwd not merged: %q", b)
	}
	if b := readFile(t, filepath.Join(l.Root(), "etc/shadow")); !strings.Contains(string(b), "www-data:!:") {
		t.Fatalf("shadow: %q", b)
	}
	if fi, err := os.Stat(filepath.Join(l.Root(), "run/svc")); err != nil || fi.Mode().Perm() != 0o750 {
		t.Fatalf("runtime dir: %v %v", fi, err)
	}
	// /proc is mounted only inside the service's mount namespace.
	if len(mountsBelow(l.Dir())) != 0 {
		t.Fatalf("mounts visible on the host: %v", mountsBelow(l.Dir()))
	}
	// A second start while running is a no-op.
	if st2, err := StartService(ctx, c, o); err != nil || st2.PID != st.PID {
		t.Fatalf("second start: %+v %v", st2, err)
	}
	stopped, err := StopService(ctx, c, o)
	if err != nil || stopped.Status != chroot.StatusStopped {
		t.Fatalf("stop: %+v %v", stopped, err)
	}
	if _, err := os.Stat(filepath.Join("/proc", itoa(st.PID))); err == nil {
		t.Fatal("service still running after stop")
	}
	if _, err := StartService(ctx, c, o); err != nil {
		t.Fatalf("restart: %v", err)
	}
	rm, err := RemoveService(ctx, c, o)
	if err != nil || rm.Status != "removed" {
		t.Fatalf("remove: %+v %v", rm, err)
	}
	assertNoResidue(t, l)
	if _, err := GetServiceStatus(ctx, c, o); err == nil || !strings.Contains(err.Error(), "no such service") {
		t.Fatalf("status after remove: %v", err)
	}
}

func assertNoResidue(t *testing.T, l Layout) {
	t.Helper()
	if _, err := os.Lstat(l.Dir()); err == nil {
		t.Errorf("%s still exists", l.Dir())
	}
	if m := mountsBelow(l.Dir()); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if r, err := os.Readlink(filepath.Join("/proc", e.Name(), "root")); err == nil && strings.HasPrefix(r, l.Dir()) {
			t.Errorf("process %s still runs in %s", e.Name(), r)
		}
	}
}

func TestServiceFailsToStart(t *testing.T) {
	needRoot(t)
	fs := shellFS(t, "bad", []string{"/bin/sh", "-c", "echo cannot open /etc/bad.conf >&2; exit 7"})
	dest := t.TempDir()
	c := pipe(t)
	ctx := context.Background()
	if _, err := Ship(ctx, c, fs.write(t), Options{Dest: dest, NoReuse: true}); err != nil {
		t.Fatal(err)
	}
	_, err := StartService(ctx, c, ServiceOptions{Name: "bad", Dest: dest})
	if err == nil || !strings.Contains(err.Error(), "exited with status 7") || !strings.Contains(err.Error(), "cannot open /etc/bad.conf") {
		t.Fatalf("err = %v", err)
	}
	if _, err := StartService(ctx, c, ServiceOptions{Name: "nosuch", Dest: dest}); err == nil || !strings.Contains(err.Error(), "no such service") {
		t.Fatalf("unknown name: %v", err)
	}
	// A root that is not complete (interrupted transfer) is not started.
	l := Layout{Dest: dest, Name: "bad"}
	os.Rename(filepath.Join(l.Dir(), completeFile), filepath.Join(l.Dir(), "was-complete"))
	if _, err := StartService(ctx, c, ServiceOptions{Name: "bad", Dest: dest}); err == nil || !strings.Contains(err.Error(), "is not complete") {
		t.Fatalf("incomplete root: %v", err)
	}
	if _, err := RemoveService(ctx, c, ServiceOptions{Name: "bad", Dest: dest}); err != nil {
		t.Fatal(err)
	}
	assertNoResidue(t, Layout{Dest: dest, Name: "bad"})
}

func TestSystemdRefusedWithoutSystemd(t *testing.T) {
	// As on a host whose init is not systemd, wherever the test runs.
	defer func(d string) { systemdDir = d }(systemdDir)
	systemdDir = filepath.Join(t.TempDir(), "no-systemd")
	needRoot(t)
	fs := shellFS(t, "sd", []string{"/bin/sh", "-c", "exec sleep 1000"})
	dest := t.TempDir()
	c := pipe(t)
	if _, err := Ship(context.Background(), c, fs.write(t), Options{Dest: dest, NoReuse: true}); err != nil {
		t.Fatal(err)
	}
	_, err := StartService(context.Background(), c, ServiceOptions{Name: "sd", Dest: dest, Systemd: true})
	if err == nil || !strings.Contains(err.Error(), "systemd is not running") {
		t.Fatalf("err = %v", err)
	}
	txt := unitText(Layout{Dest: dest, Name: "sd"}, &fs.m)
	if !strings.Contains(txt, "RootDirectory="+dest+"/sd/root\n") || !strings.Contains(txt, `ExecStart="/bin/sh" "-c" "exec sleep 1000"`) {
		t.Fatalf("unit:\n%s", txt)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
