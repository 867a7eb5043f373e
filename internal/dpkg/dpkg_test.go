package dpkg

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/migrate-tool/migrate/internal/testenv"
)

const status = `Package: nginx-common
Status: install ok installed
Architecture: all
Version: 1.22.1-9+deb12u11
Conffiles:
 /etc/nginx/nginx.conf 3d3ea1d9c4ae5e6e6e1f86dc8c3ab4b0
 /etc/nginx/old.conf 0123456789abcdef0123456789abcdef obsolete
Description: small, powerful, scalable web/proxy server
 multi-line description
 .
 continued

Package: gone
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: libc6
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Version: 2.36-9+deb12u10
`

func TestParseStatus(t *testing.T) {
	pkgs, err := ParseStatus(strings.NewReader(status))
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != 3 {
		t.Fatalf("got %d packages", len(pkgs))
	}
	n := pkgs[0]
	if n.Name != "nginx-common" || n.Version != "1.22.1-9+deb12u11" || !n.Installed() || len(n.Conffiles) != 2 {
		t.Fatalf("nginx-common = %+v", n)
	}
	if c := n.Conffiles[1]; c.Path != "/etc/nginx/old.conf" || !c.Obsolete || n.Conffiles[0].Obsolete {
		t.Fatalf("conffiles = %+v", n.Conffiles)
	}
	if pkgs[1].Installed() {
		t.Fatal("config-files package reported installed")
	}
	if pkgs[2].MultiArch != "same" || pkgs[2].Arch != "amd64" {
		t.Fatalf("libc6 = %+v", pkgs[2])
	}
}

func TestParseStatusErrors(t *testing.T) {
	for _, in := range []string{"Package x\n", "Package: a\nConffiles:\n relative abc\n"} {
		if _, err := ParseStatus(strings.NewReader(in)); err == nil {
			t.Errorf("ParseStatus(%q) = nil error", in)
		}
	}
}

func TestDB(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "info"), 0o755)
	os.WriteFile(filepath.Join(dir, "status"), []byte(status), 0o644)
	os.WriteFile(filepath.Join(dir, "info", "nginx-common.list"), []byte("/.\n/etc\n/etc/nginx\n/etc/nginx/nginx.conf\n/lib/x\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "info", "libc6:amd64.list"), []byte("/.\n/lib\n/lib/x86_64-linux-gnu/libc.so.6\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "info", "libc6:amd64.md5sums"), []byte("0123456789abcdef0123456789abcdef  lib/x86_64-linux-gnu/libc.so.6\n"), 0o644)
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if db.Lookup("gone") != nil || db.Lookup("libc6:amd64") == nil || db.Lookup("libc6") == nil {
		t.Fatal("lookup wrong")
	}
	files, err := db.Files(db.Lookup("nginx-common"))
	if err != nil || strings.Join(files, ",") != "/etc,/etc/nginx,/etc/nginx/nginx.conf,/lib/x" {
		t.Fatalf("files = %v, %v", files, err)
	}
	sums, err := db.MD5Sums(db.Lookup("libc6"))
	if err != nil || sums["/lib/x86_64-linux-gnu/libc.so.6"] != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("md5sums = %v, %v", sums, err)
	}
	if o := db.Owners("/etc/nginx/nginx.conf"); len(o) != 1 || o[0] != "nginx-common" {
		t.Fatalf("owners = %v", o)
	}
	hits := db.Search(map[string]string{"/lib/x86_64-linux-gnu/libc.so.6": "/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib/x": "/usr/lib/x", "/nope": "/nope"})
	if len(hits) != 2 || hits["/usr/lib/x86_64-linux-gnu/libc.so.6"][0] != "libc6" || hits["/usr/lib/x"][0] != "nginx-common" {
		t.Fatalf("Search = %v", hits)
	}
	db.IndexOwners(func(p string) string { return strings.Replace(p, "/lib/", "/usr/lib/", 1) })
	if o := db.Owners("/usr/lib/x86_64-linux-gnu/libc.so.6"); len(o) != 1 || o[0] != "libc6" {
		t.Fatalf("canonical owners = %v", o)
	}
	if _, err := Open(filepath.Join(dir, "nope")); !os.IsNotExist(unwrapAll(err)) {
		t.Fatalf("Open missing = %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

// TestRealDatabase reads this machine's database if there is one.
func TestRealDatabase(t *testing.T) {
	db, err := Open("")
	if err != nil {
		testenv.Skip(t, "no dpkg database:", err)
	}
	p := db.Lookup("libc6")
	if p == nil {
		testenv.Skip(t, "libc6 not installed")
	}
	sums, err := db.MD5Sums(p)
	if err != nil || len(sums) == 0 {
		t.Fatalf("libc6 md5sums: %v (%d)", err, len(sums))
	}
}

func FuzzParseStatus(f *testing.F) {
	f.Add(status)
	f.Fuzz(func(t *testing.T, s string) {
		pkgs, err := ParseStatus(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, p := range pkgs {
			for _, c := range p.Conffiles {
				if !strings.HasPrefix(c.Path, "/") {
					t.Fatalf("conffile %q not absolute", c.Path)
				}
			}
		}
	})
}

// BenchmarkSearch finds the owners of a few library paths in this host's
// whole database, as a capture does for every file it collects, once the
// file lists are in memory (see BenchmarkSearchFirst).
func BenchmarkSearch(b *testing.B) {
	db, err := Open("")
	if err != nil {
		testenv.Skip(b, "no dpkg database here: ", err)
	}
	want := map[string]string{}
	for _, p := range []string{"/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/sbin/nginx", "/etc/nsswitch.conf", "/bin/sh", "/usr/bin/dpkg"} {
		want[p] = p
	}
	b.ReportAllocs()
	for b.Loop() {
		if len(db.Search(want)) == 0 {
			b.Fatal("nothing found")
		}
	}
}

// BenchmarkSearchFirst is a Search on a database whose file lists are not
// in memory yet: LoadLists, then the scan.
func BenchmarkSearchFirst(b *testing.B) {
	db, err := Open("")
	if err != nil {
		testenv.Skip(b, "no dpkg database here: ", err)
	}
	want := map[string]string{"/usr/lib/x86_64-linux-gnu/libc.so.6": "libc", "/bin/sh": "sh"}
	b.ReportAllocs()
	for b.Loop() {
		fresh := &DB{Admin: db.Admin, Packages: db.Packages}
		if len(fresh.Search(want)) == 0 {
			b.Fatal("nothing found")
		}
	}
}
