package capture

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestParseTrace(t *testing.T) {
	d := t.TempDir()
	root := "/var/spool/fake" // a chroot target; parsing does not look at it
	write := func(name, s string) { os.WriteFile(filepath.Join(d, name), []byte(s), 0o644) }
	write("t.10", `execve("/usr/sbin/postfix", ["postfix", "start-fg"], 0x7ffd /* 5 vars */) = 0
openat(AT_FDCWD, "/etc/ld.so.cache", O_RDONLY|O_CLOEXEC) = 3
openat(AT_FDCWD, "/etc/missing", O_RDONLY) = -1 ENOENT (No such file or directory)
newfstatat(3, "", {st_mode=S_IFREG|0644, st_size=1}, AT_EMPTY_PATH) = 0
clone3({flags=CLONE_VM|CLONE_VFORK, exit_signal=SIGCHLD, stack=0x7f, stack_size=0x9000}, 88) = 11
chdir("`+root+`") = 0
clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f) = 12
openat(AT_FDCWD, "/run/new.pid", O_WRONLY|O_CREAT|O_TRUNC, 0644) = 4
openat(AT_FDCWD, "rel\x2efile", O_RDONLY) = 5
+++ exited with 0 +++
`)
	write("t.11", `execve("/bin/sh", ["sh", "-c", "x"], 0x1 /* 5 vars */) = 0
`)
	write("t.12", `chroot(".") = 0
openat(AT_FDCWD, "/etc/services", O_RDONLY) = 3
`)
	res, err := parseTraceDir(d, "/")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/usr/sbin/postfix", "/bin/sh"}; !reflect.DeepEqual(res.Execs, want) {
		t.Errorf("execs %v, want %v", res.Execs, want)
	}
	sort.Strings(res.Opens)
	want := []string{"/etc/ld.so.cache", filepath.Join(root, "etc/services"), filepath.Join(root, "rel.file")}
	sort.Strings(want)
	if !reflect.DeepEqual(res.Opens, want) {
		t.Errorf("opens %v, want %v", res.Opens, want)
	}
	if !reflect.DeepEqual(res.Created, []string{"/run/new.pid"}) {
		t.Errorf("created %v", res.Created)
	}
	if res.Procs != 3 {
		t.Errorf("procs %d", res.Procs)
	}
}

func TestSplitSyscall(t *testing.T) {
	tests := []struct {
		in   string
		name string
		ret  int64
		ok   bool
	}{
		{`openat(AT_FDCWD, "/a", O_RDONLY) = 3`, "openat", 3, true},
		{`access("/etc/ld.so.preload", R_OK) = -1 ENOENT (No such file or directory)`, "access", -1, true},
		{`--- SIGCHLD {si_signo=SIGCHLD} ---`, "", 0, false},
		{`+++ exited with 0 +++`, "", 0, false},
		{`mmap(NULL, 8192, PROT_READ, MAP_PRIVATE, 3, 0) = 0x7f0000000000`, "mmap", 0x7f0000000000, true},
	}
	for _, tt := range tests {
		name, _, ret, ok := splitSyscall(tt.in)
		if name != tt.name || ret != tt.ret || ok != tt.ok {
			t.Errorf("splitSyscall(%q) = %q %d %v", tt.in, name, ret, ok)
		}
	}
	if s, ok := firstString(`AT_FDCWD, "a\"b\\c\303\251", 0`); !ok || s != "a\"b\\c\u00e9" {
		t.Errorf("firstString = %q %v", s, ok)
	}
}

func TestParseNet(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 12346 1 0000000000000000 100 0 0 10 0
`
	ls := parseNet("tcp", table)
	if len(ls) != 1 || ls[0].Addr != "127.0.0.1" || ls[0].Port.Port != 8080 || ls[0].inode != 12345 {
		t.Fatalf("parseNet = %+v", ls)
	}
	v6 := "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: 00000000000000000000000001000000:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 777 2 0000000000000000 0\n"
	ls = parseNet("udp6", v6)
	if len(ls) != 1 || ls[0].Addr != "::1" || ls[0].Port.Port != 53 {
		t.Fatalf("parseNet udp6 = %+v", ls)
	}
}

func TestNormalizeCmdline(t *testing.T) {
	got := normalizeCmdline([]string{"nginx: master process /usr/sbin/nginx -c /srv/n.conf -g daemon off;"})
	if strings.Join(got, "|") != "/usr/sbin/nginx|-c|/srv/n.conf|-g|daemon|off;" {
		t.Fatalf("got %q", got)
	}
	p := &Process{Cmdline: got}
	if p.arg("-c") != "/srv/n.conf" {
		t.Fatalf("arg -c = %q", p.arg("-c"))
	}
	if got := normalizeCmdline([]string{"/usr/lib/postfix/sbin/master", "-w"}); len(got) != 2 {
		t.Fatalf("split a normal cmdline: %q", got)
	}
}

func TestParseNginx(t *testing.T) {
	d := t.TempDir()
	os.MkdirAll(filepath.Join(d, "sites"), 0o755)
	os.WriteFile(filepath.Join(d, "sites", "a.conf"), []byte("server { listen 80; root /srv/a; # comment\n location /x { alias \"/srv/x y\"; } }\n"), 0o644)
	os.WriteFile(filepath.Join(d, "nginx.conf"), []byte("user nobody;\npid /run/n.pid;\nhttp { include sites/*.conf; access_log /var/log/a.log combined; }\n"), 0o644)
	var got []string
	for _, dv := range readNginx(filepath.Join(d, "nginx.conf"), d, 0) {
		got = append(got, dv.name+"="+strings.Join(dv.args, " "))
	}
	want := "user=nobody|pid=/run/n.pid|http=|server=|listen=80|root=/srv/a|location=/x|alias=/srv/x y|access_log=/var/log/a.log combined"
	if strings.Join(got, "|") != want {
		t.Fatalf("got  %s\nwant %s", strings.Join(got, "|"), want)
	}
}

func TestReadNamed(t *testing.T) {
	d := t.TempDir()
	os.WriteFile(filepath.Join(d, "zones.conf"), []byte(`zone "a.test" { type primary; file "a.test.db"; };`), 0o644)
	os.WriteFile(filepath.Join(d, "named.conf"), []byte(`// comment "x"
/* file "nope"; */
options { directory "`+d+`/data"; pid-file "named.pid"; };
include "`+d+`/zones.conf";
# key "k" { secret "s"; };
`), 0o644)
	var got []string
	for _, s := range readNamed(filepath.Join(d, "named.conf"), d, 0) {
		got = append(got, s.key+"="+strings.TrimPrefix(s.val, d))
	}
	want := "directory=/data|pid-file=named.pid|include=/zones.conf|file=a.test.db"
	if strings.Join(got, "|") != want {
		t.Fatalf("got  %s\nwant %s", strings.Join(got, "|"), want)
	}
}

func TestReadMainCf(t *testing.T) {
	d := t.TempDir()
	os.WriteFile(filepath.Join(d, "main.cf"), []byte("queue_directory = /srv/spool\n# c\nalias_maps = hash:$config_directory/aliases,\n  lmdb:/etc/x\nsmtp_tls_session_cache_database = btree:${data_directory}/smtp_scache\n"), 0o644)
	v := readMainCf(filepath.Join(d, "main.cf"))
	if v["queue_directory"] != "/srv/spool" || v["mail_spool_directory"] != "/var/mail" {
		t.Fatalf("values %v", v)
	}
	files := mapFiles(v["alias_maps"])
	want := []string{d + "/aliases", d + "/aliases.db", "/etc/x", "/etc/x.lmdb"}
	if !reflect.DeepEqual(files, want) {
		t.Fatalf("map files %v, want %v", files, want)
	}
}

func TestDelta(t *testing.T) {
	t0 := time.Unix(1, 0)
	base := &Manifest{Version: 1, Kind: KindFull, Entries: []Entry{
		{Path: "/srv", Type: TypeDir, Mode: 0o755, MTime: t0},
		{Path: "/srv/a", Type: TypeFile, Size: 1, SHA256: strings.Repeat("a", 64)},
		{Path: "/srv/b", Type: TypeFile, Size: 1, SHA256: strings.Repeat("b", 64)},
		{Path: "/srv/c", Type: TypeFile, Size: 1, SHA256: strings.Repeat("c", 64)},
	}}
	cur := &Manifest{Version: 1, Kind: KindFull, Entries: []Entry{
		{Path: "/srv", Type: TypeDir, Mode: 0o755, MTime: t0.Add(time.Hour)}, // mtime only: unchanged
		{Path: "/srv/a", Type: TypeFile, Size: 2, SHA256: strings.Repeat("d", 64)},
		{Path: "/srv/c", Type: TypeFile, Size: 1, SHA256: strings.Repeat("c", 64), Mode: 0o600},
		{Path: "/srv/n", Type: TypeFile, Size: 1, SHA256: strings.Repeat("e", 64)},
	}}
	d, err := Delta(base, cur)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range d.Entries {
		got = append(got, e.Path)
	}
	if strings.Join(got, " ") != "/srv/a /srv/c /srv/n" || strings.Join(d.Deleted, " ") != "/srv/b" || d.Kind != KindDelta {
		t.Fatalf("delta entries %v deleted %v", got, d.Deleted)
	}
	if dg, _ := base.Digest(); d.Base != dg {
		t.Fatal("base digest not recorded")
	}
	if _, err := Delta(d, cur); err == nil {
		t.Fatal("delta against a delta accepted")
	}
}

// TestAddrBatch: the live service's addresses go on the trace's lo in one
// ip batch; loopback and wildcard addresses need nothing.
func TestAddrBatch(t *testing.T) {
	got := addrBatch([]string{"192.0.2.10", "127.0.0.1", "0.0.0.0", "2001:db8::1", "::"})
	want := "addr add 192.0.2.10/32 dev lo\naddr add 2001:db8::1/128 dev lo\n"
	if got != want {
		t.Fatalf("addrBatch =\n%s\nwant\n%s", got, want)
	}
	if got := addrBatch([]string{"127.0.0.1", "::", "0.0.0.0"}); got != "" {
		t.Fatalf("loopback and wildcard only: addrBatch = %q, want none", got)
	}
}

// TestOverlayPath: overlayfs's separators in a path are escaped.
func TestOverlayPath(t *testing.T) {
	if got, want := overlayPath(`/srv/a,b:c\d`), `/srv/a\,b\:c\\d`; got != want {
		t.Fatalf("overlayPath = %q, want %q", got, want)
	}
}
