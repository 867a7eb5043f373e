package transfer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/capture"
)

func manifestOf(entries ...capture.Entry) *capture.Manifest {
	m := &capture.Manifest{Version: capture.ManifestVersion, Kind: capture.KindFull, Service: "evil", Created: time.Unix(0, 0)}
	for _, e := range entries {
		e.Reasons = []string{"test"}
		if e.Type == capture.TypeFile && e.SHA256 == "" {
			e.SHA256 = strings.Repeat("0", 64)
		}
		m.Entries = append(m.Entries, e)
	}
	return m
}

func TestCheckRefusesHostileEntries(t *testing.T) {
	dir := func(p string) capture.Entry { return capture.Entry{Path: p, Type: capture.TypeDir, Mode: 0o755} }
	file := func(p string) capture.Entry { return capture.Entry{Path: p, Type: capture.TypeFile, Mode: 0o644} }
	sym := func(p, to string) capture.Entry { return capture.Entry{Path: p, Type: capture.TypeSymlink, Link: to} }
	tests := []struct {
		name    string
		entries []capture.Entry
		refused string // path named in the error, "" if accepted
	}{
		{"plain", []capture.Entry{dir("/etc"), file("/etc/passwd")}, ""},
		{"dotdot path", []capture.Entry{file("/etc/../../etc/passwd")}, "manifest"},
		{"relative path", []capture.Entry{file("etc/passwd")}, "manifest"},
		{"relative symlink escape", []capture.Entry{sym("/x", "../../../../etc/shadow")}, "/x"},
		{"symlink escape through other link", []capture.Entry{sym("/up", "a/../.."), sym("/x", "up/etc")}, "/up"},
		{"absolute symlink inside", []capture.Entry{sym("/lib", "/usr/lib"), sym("/x", "/etc/shadow")}, ""},
		{"absolute symlink with dotdot", []capture.Entry{sym("/x", "/../../etc")}, "/x"},
		{"file through escaping dir link", []capture.Entry{sym("/d", "../../tmp"), file("/d/evil")}, "/d"},
		{"file through usrmerge link", []capture.Entry{sym("/lib", "usr/lib"), dir("/usr"), dir("/usr/lib"), file("/lib/libc.so.6")}, ""},
		{"symlink loop", []capture.Entry{sym("/a", "b"), sym("/b", "a"), file("/a/x")}, "/a"},
		{"block device", []capture.Entry{dir("/dev"), {Path: "/dev/sda", Type: capture.TypeBlockDev, Major: 8}}, "/dev/sda"},
		{"dev mem", []capture.Entry{{Path: "/dev/mem", Type: capture.TypeCharDev, Major: 1, Minor: 1}}, "/dev/mem"},
		{"null with wrong numbers", []capture.Entry{{Path: "/dev/null", Type: capture.TypeCharDev, Major: 1, Minor: 1}}, "/dev/null"},
		{"standard null", []capture.Entry{{Path: "/dev/null", Type: capture.TypeCharDev, Major: 1, Minor: 3}}, ""},
		{"hardlink to outside", []capture.Entry{file("/a"), {Path: "/h", Type: capture.TypeHardlink, Link: "/../etc/passwd"}}, "manifest"},
		{"hardlink through escaping link", []capture.Entry{sym("/d", "../.."), file("/d/etc/passwd"), {Path: "/h", Type: capture.TypeHardlink, Link: "/d/etc/passwd"}}, "/d"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Check(manifestOf(tt.entries...), nil)
			if tt.refused == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ee *EntryError
			if !errors.As(err, &ee) {
				t.Fatalf("err = %v, want EntryError", err)
			}
			if ee.Path != tt.refused {
				t.Fatalf("refused %s (%v), want %s", ee.Path, err, tt.refused)
			}
		})
	}
}

// snapshot lists every path under dir with its mode and size.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, _ := os.Lstat(p)
		out[p] = fmt.Sprint(fi.Mode(), fi.ModTime(), fi.Size())
		return nil
	})
	return out
}

// TestHostileArchiveTouchesNothingOutside sends hostile manifests straight
// to the target handler (the target does not trust the sender) and checks
// that nothing outside the root changed.
func TestHostileArchiveTouchesNothingOutside(t *testing.T) {
	needRoot(t)
	sandbox := t.TempDir()
	outside := filepath.Join(sandbox, "outside")
	os.MkdirAll(outside, 0o755)
	os.WriteFile(filepath.Join(outside, "passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644)
	dest := filepath.Join(sandbox, "dest")
	before := snapshot(t, outside)

	// A symlink already planted in the root pointing outside (e.g. from a
	// compromised earlier run): writing through it must fail, not follow.
	l := Layout{Dest: dest, Name: "evil"}
	os.MkdirAll(l.Root(), 0o755)
	os.Symlink(outside, filepath.Join(l.Root(), "planted"))

	c := pipe(t)
	cases := map[string]*capture.Manifest{
		"traversal":      manifestOf(capture.Entry{Path: "/../outside/passwd", Type: capture.TypeFile, Size: 1}),
		"symlink escape": manifestOf(capture.Entry{Path: "/e", Type: capture.TypeSymlink, Link: "../../outside"}, capture.Entry{Path: "/e/passwd", Type: capture.TypeFile, Size: 1}),
		"device":         manifestOf(capture.Entry{Path: "/dev/kmsg", Type: capture.TypeCharDev, Major: 1, Minor: 11}),
		"hardlink":       manifestOf(capture.Entry{Path: "/h", Type: capture.TypeHardlink, Link: "/../../outside/passwd"}),
	}
	for name, m := range cases {
		d, _ := m.Digest()
		var res PrepareResult
		err := c.Call(context.Background(), MethodPrepare, prepareParams{Dest: dest, Name: "evil", Digest: d, Manifest: m}, &res)
		if err == nil {
			// Accepted only if nothing is written through the planted link.
			err = c.Call(context.Background(), MethodCommit, commitParams{Dest: dest, Name: "evil", Digest: d}, &CommitResult{})
		}
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), "refused") && !strings.Contains(err.Error(), "symlink") {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A valid archive writing through the planted absolute link lands
	// inside the root (chroot semantics), never in the real directory.
	fs := newTestFS("evil").file("/planted/passwd", []byte("evil::0:0::/:/bin/sh\n"))
	if _, err := Ship(context.Background(), c, fs.write(t), Options{Dest: dest, NoReuse: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(l.Root(), outside, "passwd")); err != nil {
		t.Fatalf("file not inside the root: %v", err)
	}
	after := snapshot(t, outside)
	if len(before) != len(after) {
		t.Fatalf("outside changed: %v -> %v", before, after)
	}
	for p, v := range before {
		if after[p] != v {
			t.Fatalf("outside changed at %s", p)
		}
	}
}

func TestRootNeverFollowsSymlinks(t *testing.T) {
	needRoot(t)
	sandbox := t.TempDir()
	outside := filepath.Join(sandbox, "outside")
	os.MkdirAll(outside, 0o755)
	r, err := OpenRoot(filepath.Join(sandbox, "root"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	os.Symlink(outside, filepath.Join(r.Path(), "out"))
	os.Symlink("/", filepath.Join(r.Path(), "slash"))
	m := Meta{Mode: 0o644}
	for _, p := range []string{"/out/x", "/slash/tmp/x", "/out/sub/x"} {
		if err := r.WriteFile(p, strings.NewReader(""), 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", m); err == nil {
			t.Errorf("WriteFile %s followed a symlink", p)
		}
		if err := r.Mkdir(p, m); err == nil {
			t.Errorf("Mkdir %s followed a symlink", p)
		}
		if err := r.Symlink(p, "x", m); err == nil {
			t.Errorf("Symlink %s followed a symlink", p)
		}
	}
	// Replacing the link itself is fine and must not touch its target.
	if err := r.WriteFile("/out", strings.NewReader(""), 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", m); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(outside); err != nil || !fi.IsDir() {
		t.Fatal("outside dir damaged")
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("written outside: %v", ents)
	}
}
