package transfer

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"github.com/migrate-tool/migrate/internal/testenv"
	"os"
	"path/filepath"
	"testing"

	"github.com/migrate-tool/migrate/capture"
)

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func TestShipFreshResumeAndComplete(t *testing.T) {
	needRoot(t)
	big := randBytes(3 << 20)
	fs := newTestFS("web").dir("/etc").dir("/etc/web").dir("/srv").
		file("/etc/web/web.conf", []byte("listen 80;\n")).
		file("/srv/big.bin", big).
		file("/srv/index.html", []byte("<h1>hello</h1>\n")).
		entry(capture.Entry{Path: "/srv/link", Type: capture.TypeSymlink, Link: "index.html", Mode: 0o777}).
		entry(capture.Entry{Path: "/srv/hard", Type: capture.TypeHardlink, Link: "/srv/index.html"}).
		entry(capture.Entry{Path: "/dev", Type: capture.TypeDir, Mode: 0o755}).
		entry(capture.Entry{Path: "/dev/null", Type: capture.TypeCharDev, Major: 1, Minor: 3, Mode: 0o666})
	arch := fs.write(t)
	dest := t.TempDir()
	c := pipe(t)
	ctx := context.Background()

	st, err := Ship(ctx, c, arch, Options{Dest: dest, NoReuse: true})
	if err != nil {
		t.Fatal(err)
	}
	l := Layout{Dest: dest, Name: "web"}
	if st.FilesSent != 3 || st.BytesSent == 0 || st.AlreadyComplete {
		t.Fatalf("first ship: %+v", st)
	}
	if got := readFile(t, filepath.Join(l.Root(), "srv/big.bin")); !bytes.Equal(got, big) {
		t.Fatal("big.bin differs")
	}
	if tgt, _ := os.Readlink(filepath.Join(l.Root(), "srv/link")); tgt != "index.html" {
		t.Fatalf("symlink %q", tgt)
	}
	a, _ := os.Stat(filepath.Join(l.Root(), "srv/hard"))
	b, _ := os.Stat(filepath.Join(l.Root(), "srv/index.html"))
	if !os.SameFile(a, b) {
		t.Fatal("hardlink not made")
	}
	if fi, err := os.Stat(filepath.Join(l.Root(), "dev/null")); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("dev/null: %v %v", fi, err)
	}
	if fi, _ := os.Stat(filepath.Join(l.Root(), "srv/big.bin")); !fi.ModTime().Equal(mtime) || fi.Mode().Perm() != 0o644 {
		t.Fatalf("meta %v %v", fi.ModTime(), fi.Mode())
	}
	if l.Complete() != st.Digest {
		t.Fatal("not marked complete")
	}
	if fi, err := os.Stat(l.Dir()); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("%s: %v %v, want mode 0700 (set-uid files inside)", l.Dir(), fi.Mode(), err)
	}

	// Same archive again: nothing sent.
	st2, err := Ship(ctx, c, arch, Options{Dest: dest, NoReuse: true})
	if err != nil || !st2.AlreadyComplete || st2.BytesSent != 0 {
		t.Fatalf("second ship: %+v %v", st2, err)
	}

	// Damage one file in the root and lose the marker, as after an
	// interruption (with a stale temp file): only that file is sent again.
	os.Remove(filepath.Join(l.Dir(), completeFile))
	stale := filepath.Join(l.Root(), "srv/.migrate-tmp-0011-big.bin")
	os.WriteFile(stale, []byte("partial"), 0o600)
	p := filepath.Join(l.Root(), "srv/big.bin")
	big2 := readFile(t, p)
	big2[12345] ^= 0xff
	if err := os.WriteFile(p, big2, 0o644); err != nil {
		t.Fatal(err)
	}
	st3, err := Ship(ctx, c, arch, Options{Dest: dest, NoReuse: true})
	if err != nil {
		t.Fatal(err)
	}
	if st3.FilesSent != 1 || st3.BytesPresent != int64(len("listen 80;\n")+len("<h1>hello</h1>\n")) {
		t.Fatalf("repair ship: %+v", st3)
	}
	if got := readFile(t, p); !bytes.Equal(got, big) {
		t.Fatal("big.bin not repaired")
	}
	if _, err := os.Stat(stale); err == nil {
		t.Fatal("stale temp file left in the root")
	}
}

func TestShipReusesTargetFiles(t *testing.T) {
	needRoot(t)
	// A file that exists on "the target's /" at the same path: this test
	// binary's own /etc/os-release.
	osr, err := os.ReadFile("/etc/os-release")
	if err != nil {
		testenv.Skip(t, err)
	}
	fs := newTestFS("reuse").dir("/etc").file("/etc/os-release", osr).file("/etc/unique", randBytes(1<<20))
	arch := fs.write(t)
	dest := t.TempDir()
	st, err := Ship(context.Background(), pipe(t), arch, Options{Dest: dest})
	if err != nil {
		t.Fatal(err)
	}
	if st.BytesReused != int64(len(osr)) || st.FilesSent != 1 {
		t.Fatalf("%+v", st)
	}
	// A second service holding the same unique content reuses it from the first root.
	fs2 := newTestFS("reuse2").dir("/data").file("/data/copy", fs.bodies["/etc/unique"])
	st2, err := Ship(context.Background(), pipe(t), fs2.write(t), Options{Dest: dest})
	if err != nil {
		t.Fatal(err)
	}
	if st2.FilesSent != 0 || st2.BytesReused != 1<<20 || st2.BytesSent != 0 {
		t.Fatalf("%+v", st2)
	}
}

func TestShipDelta(t *testing.T) {
	needRoot(t)
	base := newTestFS("d").dir("/a").file("/a/keep", []byte("keep")).file("/a/change", []byte("v1")).file("/a/gone", []byte("bye"))
	dest := t.TempDir()
	c := pipe(t)
	st, err := Ship(context.Background(), c, base.write(t), Options{Dest: dest, NoReuse: true})
	if err != nil {
		t.Fatal(err)
	}
	delta := newTestFS("d").file("/a/change", []byte("v2")).file("/a/new", []byte("new"))
	delta.m.Kind, delta.m.Base, delta.m.Deleted = capture.KindDelta, st.Digest, []string{"/a/gone"}
	if _, err := Ship(context.Background(), c, delta.write(t), Options{Dest: dest, NoReuse: true}); err != nil {
		t.Fatal(err)
	}
	root := Layout{Dest: dest, Name: "d"}.Root()
	for p, want := range map[string]string{"a/keep": "keep", "a/change": "v2", "a/new": "new"} {
		if got := string(readFile(t, filepath.Join(root, p))); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "a/gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a/gone still there: %v", err)
	}
	// A delta on a different base is refused.
	bad := newTestFS("d").file("/a/x", []byte("x"))
	bad.m.Kind, bad.m.Base = capture.KindDelta, "0000"
	if _, err := Ship(context.Background(), c, bad.write(t), Options{Dest: dest}); err == nil {
		t.Fatal("delta on wrong base accepted")
	}
}

func TestShipDiskFull(t *testing.T) {
	needRoot(t)
	dest := t.TempDir()
	if err := mountTmpfs(t, dest, "4m"); err != nil {
		testenv.Skip(t, err)
	}
	fs := newTestFS("full").dir("/d").file("/d/big", randBytes(8<<20))
	_, err := Ship(context.Background(), pipe(t), fs.write(t), Options{Dest: dest, NoReuse: true})
	if err == nil {
		t.Fatal("shipping 8 MiB into 4 MiB succeeded")
	}
	if l := (Layout{Dest: dest, Name: "full"}); l.Complete() != "" {
		t.Fatal("marked complete")
	}
	if _, err := os.Stat(filepath.Join(dest, "full/root/d/big")); err == nil {
		t.Fatal("partial file left in place")
	}
}

func TestShipFullOverDifferentRootRemovesStale(t *testing.T) {
	needRoot(t)
	dest := t.TempDir()
	c := pipe(t)
	a := newTestFS("r").dir("/a").dir("/a/old").file("/a/keep", []byte("k")).file("/a/gone", []byte("g")).file("/a/old/x", []byte("x"))
	if _, err := Ship(context.Background(), c, a.write(t), Options{Dest: dest, NoReuse: true}); err != nil {
		t.Fatal(err)
	}
	b := newTestFS("r").dir("/a").file("/a/keep", []byte("k")).file("/a/new", []byte("n"))
	if _, err := Ship(context.Background(), c, b.write(t), Options{Dest: dest, NoReuse: true}); err != nil {
		t.Fatal(err)
	}
	root := Layout{Dest: dest, Name: "r"}.Root()
	for p, want := range map[string]bool{"a/keep": true, "a/new": true, "a/gone": false, "a/old": false} {
		if _, err := os.Lstat(filepath.Join(root, p)); (err == nil) != want {
			t.Errorf("%s exists=%v, want %v", p, err == nil, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dest, "r", previousFile)); err == nil {
		t.Error("previous manifest left behind")
	}
}
