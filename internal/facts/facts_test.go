package facts

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/migrate-tool/migrate/internal/testenv"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fixture builds a fake /proc and root file system.
type fixture struct {
	t    *testing.T
	proc string
	root string
}

func newFixture(t *testing.T) *fixture {
	d := t.TempDir()
	return &fixture{t: t, proc: filepath.Join(d, "proc"), root: filepath.Join(d, "root")}
}

func (f *fixture) write(base, rel, content string) {
	f.t.Helper()
	p := filepath.Join(base, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) link(rel, target string) {
	f.t.Helper()
	p := filepath.Join(f.proc, rel)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.Symlink(target, p); err != nil {
		f.t.Fatal(err)
	}
}

// process adds /proc/PID with comm, exe and socket fds.
func (f *fixture) process(pid, comm, exe string, inodes ...string) {
	f.write(f.proc, pid+"/comm", comm+"\n")
	if exe != "" {
		f.link(pid+"/exe", exe)
	}
	os.MkdirAll(filepath.Join(f.proc, pid, "fd"), 0o755)
	f.link(pid+"/fd/0", "/dev/null")
	for i, ino := range inodes {
		f.link(pid+"/fd/"+string(rune('3'+i)), "socket:["+ino+"]")
	}
}

func (f *fixture) collector() *Collector {
	return &Collector{
		Proc: f.proc, Root: f.root,
		Uname: func() string { return "x86_64" },
		Statfs: func(p string) (uint64, uint64, uint64, error) {
			if p == "/" {
				return 100 << 30, 60 << 30, 55 << 30, nil
			}
			if p == "/srv/data" {
				return 10 << 30, 9 << 30, 9 << 30, nil
			}
			return 0, 0, 0, errors.New("no such mount")
		},
	}
}

const tcpTable = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0019 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2222 1 0000000000000000 100 0 0 10 0
   2: 0100007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 3333 1 0000000000000000 100 0 0 10 0
   3: 0100007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 3334 1 0000000000000000 100 0 0 10 0
   4: 0A00E70A:0016 FE00E70A:D431 01 00000000:00000000 02:0005E4A1 00000000     0        0 9999 2 0000000000000000 20 4 29 10 -1
   5: 0100E70A:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000    33        0 4444 1 0000000000000000 100 0 0 10 0
`

const tcp6Table = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1112 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5555 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7777 1 0000000000000000 100 0 0 10 0
`

const udpTable = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 6666 2 0000000000000000 0
  101: 0A00E70A:A1B2 0100E70A:0035 01 00000000:00000000 00:00000000 00000000     0        0 8888 2 0000000000000000 0
  102: 00000000:0000 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 8889 2 0000000000000000 0
`

func fullFixture(t *testing.T) *fixture {
	f := newFixture(t)
	f.write(f.proc, "sys/kernel/hostname", "mig-old\n")
	f.write(f.proc, "sys/kernel/osrelease", "6.1.0-18-amd64\n")
	f.write(f.proc, "sys/kernel/version", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1\n")
	f.write(f.proc, "cpuinfo", "processor\t: 0\nmodel name\t: X\n\nprocessor\t: 1\nmodel name\t: X\n\n")
	f.write(f.proc, "meminfo", "MemTotal:        2000000 kB\nMemFree:          100000 kB\nMemAvailable:    1500000 kB\nHugePages_Total:       0\n")
	f.write(f.proc, "self/mounts", `/dev/vda1 / ext4 rw,relatime 0 0
proc /proc proc rw 0 0
sysfs /sys sysfs rw 0 0
tmpfs /run tmpfs rw 0 0
tmpfs /dev/shm tmpfs rw 0 0
/dev/vdb1 /srv/data ext4 rw 0 0
/dev/vdc1 /mnt/with\040space ext4 rw 0 0
`)
	f.write(f.proc, "net/tcp", tcpTable)
	f.write(f.proc, "net/tcp6", tcp6Table)
	f.write(f.proc, "net/udp", udpTable)
	f.write(f.proc, "1/comm", "tini\n")
	f.process("1", "tini", "/usr/bin/tini")
	f.process("100", "nginx", "/usr/sbin/nginx", "1111", "1112")
	f.process("101", "nginx", "/usr/sbin/nginx", "1111", "1112") // worker shares the sockets
	f.process("200", "master", "/usr/lib/postfix/sbin/master", "2222")
	f.process("300", "named", "/usr/sbin/named", "3333", "3334", "6666")
	f.process("400", "sshd", "/usr/sbin/sshd", "5555")
	f.process("500", "app", "/opt/app/bin/app (deleted)", "4444")
	f.write(f.root, "etc/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n")
	f.write(f.root, "var/lib/dpkg/status", "Package: nginx\n")
	f.write(f.root, "var/lib/dpkg/info/nginx.list", "/.\n/usr\n/usr/sbin\n/usr/sbin/nginx\n")
	f.write(f.root, "var/lib/dpkg/info/nginx-common.list", "/usr/sbin/nginx-debug\n/usr/share/nginx\n") // prefix of nginx's path must not match
	f.write(f.root, "var/lib/dpkg/info/postfix.list", "/usr/lib/postfix/sbin/master")                   // last line without newline
	f.write(f.root, "var/lib/dpkg/info/bind9:amd64.list", "/usr/sbin/named\n")
	f.write(f.root, "var/lib/dpkg/info/openssh-server.list", "/sbin/sshd\n") // pre-usrmerge path
	return f
}

func TestCollect(t *testing.T) {
	f := fullFixture(t)
	got, err := f.collector().Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got.Hostname != "mig-old" || got.Kernel != "6.1.0-18-amd64" || got.Arch != "x86_64" || got.CPUs != 2 {
		t.Fatalf("system: %+v", got)
	}
	if got.MemTotal != 2000000*1024 || got.MemAvailable != 1500000*1024 {
		t.Fatalf("memory: %d %d", got.MemTotal, got.MemAvailable)
	}
	wantOS := OSRelease{ID: "debian", Name: "Debian GNU/Linux", PrettyName: "Debian GNU/Linux 12 (bookworm)", VersionID: "12", VersionCodename: "bookworm"}
	if got.OS != wantOS {
		t.Fatalf("os: %+v", got.OS)
	}
	wantMounts := []Mount{
		{Path: "/", Device: "/dev/vda1", FSType: "ext4", Size: 100 << 30, Free: 60 << 30, Avail: 55 << 30},
		{Path: "/srv/data", Device: "/dev/vdb1", FSType: "ext4", Size: 10 << 30, Free: 9 << 30, Avail: 9 << 30},
	}
	if !reflect.DeepEqual(got.Mounts, wantMounts) {
		t.Fatalf("mounts: %+v", got.Mounts)
	}
	if got.PackageManager != "dpkg" || got.Init != "tini" || got.InitProcess != "tini" {
		t.Fatalf("pm %q init %q", got.PackageManager, got.Init)
	}
	type row struct {
		Proto, Addr string
		Port, PID   int
		Proc, Exe   string
		Pkg         string
	}
	var rows []row
	for _, s := range got.Sockets {
		rows = append(rows, row{s.Proto, s.Address, s.Port, s.PID, s.Process, s.Exe, s.Package})
	}
	want := []row{
		{"tcp", "127.0.0.1", 25, 200, "master", "/usr/lib/postfix/sbin/master", "postfix"},
		{"tcp", "127.0.0.1", 53, 300, "named", "/usr/sbin/named", "bind9"},
		{"tcp", "0.0.0.0", 80, 100, "nginx", "/usr/sbin/nginx", "nginx"},
		{"tcp", "10.231.0.1", 8080, 500, "app", "/opt/app/bin/app (deleted)", ""},
		{"tcp6", "::1", 22, 400, "sshd", "/usr/sbin/sshd", "openssh-server"},
		{"tcp6", "::", 80, 100, "nginx", "/usr/sbin/nginx", "nginx"},
		{"tcp6", "127.0.0.1", 8081, 0, "", "", ""},
		{"udp", "127.0.0.1", 53, 300, "named", "/usr/sbin/named", "bind9"},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Fatalf("sockets:\n got %+v\nwant %+v", rows, want)
	}
	if s := got.Sockets[2]; !reflect.DeepEqual(s.PIDs, []int{100, 101}) {
		t.Fatalf("nginx pids %v", s.PIDs)
	}
	if s := got.Sockets[1]; !reflect.DeepEqual(s.Inodes, []uint64{3333, 3334}) || s.UID != 101 {
		t.Fatalf("named reuseport sockets not merged: %+v", s)
	}
	// the JSON form is what --json prints
	b, _ := json.Marshal(got)
	if !strings.Contains(string(b), `"package":"nginx"`) || !strings.Contains(string(b), `"package_manager":"dpkg"`) {
		t.Fatalf("json: %s", b)
	}
}

func TestRPMAndInit(t *testing.T) {
	f := fullFixture(t)
	os.RemoveAll(filepath.Join(f.root, "var/lib/dpkg"))
	os.MkdirAll(filepath.Join(f.root, "var/lib/rpm"), 0o755)
	os.MkdirAll(filepath.Join(f.root, "run/systemd/system"), 0o755)
	c := f.collector()
	var asked []string
	c.RPMOwner = func(_ context.Context, p string) (string, error) {
		asked = append(asked, p)
		if p == "/sbin/sshd" { // only the usrmerge twin is known
			return "openssh-server", nil
		}
		if p == "/usr/sbin/nginx" {
			return "nginx", nil
		}
		return "", errors.New("not owned")
	}
	got, err := c.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got.PackageManager != "rpm" || got.Init != "systemd" {
		t.Fatalf("pm %q init %q", got.PackageManager, got.Init)
	}
	pkgs := map[string]string{}
	for _, s := range got.Sockets {
		pkgs[s.Process] = s.Package
	}
	if pkgs["nginx"] != "nginx" || pkgs["sshd"] != "openssh-server" || pkgs["named"] != "" {
		t.Fatalf("rpm owners %v (asked %v)", pkgs, asked)
	}
}

func TestParseHexAddr(t *testing.T) {
	tests := []struct {
		in   string
		ip   string
		port int
	}{
		{"0100007F:0035", "127.0.0.1", 53},
		{"00000000:1F90", "0.0.0.0", 8080},
		{"00000000000000000000000001000000:0016", "::1", 22},
		{"00000000000000000000000000000000:0050", "::", 80},
		{"B80D0120000000000000000001000000:01BB", "2001:db8::1", 443},
		{"0000000000000000FFFF00000100007F:1F91", "127.0.0.1", 8081},
	}
	for _, tt := range tests {
		ip, port, err := parseHexAddr(tt.in)
		if err != nil || ip.String() != tt.ip || port != tt.port {
			t.Errorf("parseHexAddr(%s) = %v %d %v, want %s %d", tt.in, ip, port, err, tt.ip, tt.port)
		}
	}
	for _, bad := range []string{"0100007F", "01007F:0035", "zz00007F:0035", "0100007F:fffff"} {
		if _, _, err := parseHexAddr(bad); err == nil {
			t.Errorf("parseHexAddr(%s) accepted", bad)
		}
	}
	if _, err := parseNet("tcp", "header\n 0: 0100007F:0035 00000000:0000 0A\n"); err == nil {
		t.Error("short line accepted")
	}
}

func TestPathVariantsAndOSRelease(t *testing.T) {
	for in, want := range map[string][]string{
		"/usr/sbin/nginx": {"/usr/sbin/nginx", "/sbin/nginx"},
		"/sbin/init":      {"/sbin/init", "/usr/sbin/init"},
		"/lib64/ld.so":    {"/lib64/ld.so", "/usr/lib64/ld.so"},
		"/opt/x/bin/y":    {"/opt/x/bin/y"},
		"/usr/libexec/z":  {"/usr/libexec/z"},
	} {
		if got := pathVariants(in); !reflect.DeepEqual(got, want) {
			t.Errorf("pathVariants(%s) = %v", in, got)
		}
	}
	kv := parseOSRelease([]byte("# c\nNAME='Alma Linux'\nPRETTY_NAME=\"Say \\\"hi\\\"\"\nID=almalinux\n"))
	if kv["NAME"] != "Alma Linux" || kv["PRETTY_NAME"] != `Say "hi"` || kv["ID"] != "almalinux" {
		t.Fatalf("%v", kv)
	}
	if got := unescapeMount(`/mnt/with\040space\134x`); got != `/mnt/with space\x` {
		t.Fatalf("unescape %q", got)
	}
}

func TestNoProc(t *testing.T) {
	_, err := (&Collector{Proc: filepath.Join(t.TempDir(), "nothing")}).Collect(context.Background())
	if err == nil || !strings.Contains(err.Error(), "is not a mounted proc file system") {
		t.Fatalf("got %v", err)
	}
}

// The real system: whatever it runs, Collect must work and find this
// process's own listening socket.
func TestCollectLive(t *testing.T) {
	if _, err := os.Stat("/proc/self/net/tcp"); err != nil {
		testenv.Skip(t, "no /proc")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	got, err := (&Collector{}).Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	found := false
	for _, s := range got.Sockets {
		if s.Proto == "tcp" && s.Port == port && s.Address == "127.0.0.1" {
			found = s.PID == os.Getpid() && s.Exe == exe
		}
	}
	if !found {
		t.Fatalf("own socket 127.0.0.1:%d (pid %d, %s) not found in %+v", port, os.Getpid(), exe, got.Sockets)
	}
	if got.Hostname == "" || got.Kernel == "" || got.Arch == "" || got.CPUs == 0 || got.MemTotal == 0 || len(got.Mounts) == 0 {
		t.Fatalf("incomplete: %+v", got)
	}
}

// FuzzParseNet: arbitrary /proc/net tables never panic, and every socket
// returned has a port and an address.
func FuzzParseNet(f *testing.F) {
	f.Add(tcpTable)
	f.Add(tcp6Table)
	f.Add(udpTable)
	f.Add("h\n 0: 0100007F:0035 0 0A 0 0 0 0 0 zz\n")
	f.Fuzz(func(t *testing.T, data string) {
		for _, proto := range []string{"tcp", "udp6"} {
			socks, err := parseNet(proto, data)
			if err != nil {
				continue
			}
			for _, s := range socks {
				if s.Port <= 0 || s.Port > 65535 || s.Address == "" || s.Address == "<nil>" {
					t.Fatalf("bad socket %+v", s)
				}
			}
		}
	})
}
