package capture

import (
	"github.com/migrate-tool/migrate/internal/testenv"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func testCollector() *collector {
	return newCollector(slog.New(slog.NewTextHandler(io.Discard, nil)), nil, false)
}

func keys(c *collector) []string {
	var out []string
	for p, it := range c.items {
		out = append(out, p+"="+strings.Join(it.reasons, ","))
	}
	sort.Strings(out)
	return out
}

// TestCollectorResolvesDirLinks: a file reached through a symlinked
// directory is stored once, under its real directory, and the link is
// kept as its own entry (the /lib -> usr/lib case).
func TestCollectorResolvesDirLinks(t *testing.T) {
	d := t.TempDir()
	os.MkdirAll(filepath.Join(d, "usr/lib"), 0o755)
	os.WriteFile(filepath.Join(d, "usr/lib/libx.so.1.2"), []byte("x"), 0o644)
	os.Symlink("libx.so.1.2", filepath.Join(d, "usr/lib/libx.so.1"))
	os.Symlink("usr/lib", filepath.Join(d, "lib"))
	c := testCollector()
	c.add(filepath.Join(d, "lib/libx.so.1"), "elf-needed:a")
	c.add(filepath.Join(d, "usr/lib/libx.so.1"), "elf-needed:b")
	got := strings.Join(keys(c), "\n")
	want := strings.Join([]string{
		d + "/lib=dir-link",
		d + "/usr/lib/libx.so.1.2=elf-needed:a,elf-needed:b",
		d + "/usr/lib/libx.so.1=elf-needed:a,elf-needed:b",
	}, "\n")
	if got != want {
		t.Fatalf("items:\n%s\nwant:\n%s", got, want)
	}
}

// TestUsrmergeDedupe runs against this machine's merged /usr: the same
// library named through /lib and /usr/lib is one entry plus the /lib link.
func TestUsrmergeDedupe(t *testing.T) {
	if !usrmerged("lib") {
		testenv.Skip(t, "/lib is not a merged-/usr link here")
	}
	libc := "/usr/lib/x86_64-linux-gnu/libc.so.6"
	if _, err := os.Stat(libc); err != nil {
		testenv.Skip(t, "no", libc)
	}
	c := testCollector()
	c.add("/lib/x86_64-linux-gnu/libc.so.6", "a")
	c.add(libc, "b")
	c.add("/lib64/ld-linux-x86-64.so.2", "interp")
	for p := range c.items {
		if strings.HasPrefix(p, "/lib/") || strings.HasPrefix(p, "/lib64/") {
			t.Errorf("path through a merged-/usr link stored: %s", p)
		}
	}
	if it := c.items["/lib"]; it == nil || it.reasons[0] != "usrmerge" {
		t.Errorf("/lib link not kept as usrmerge: %v", keys(c))
	}
	if it := c.items[libc]; it == nil || len(it.reasons) != 2 {
		t.Errorf("libc not one entry with both reasons: %v", keys(c))
	}
	if c.items["/lib64"] == nil {
		t.Errorf("/lib64 link missing: %v", keys(c))
	}
	if canonicalPath("/lib/x86_64-linux-gnu/libc.so.6") != libc {
		t.Errorf("canonicalPath did not rewrite /lib")
	}
}

func TestCollectorTreeSkipsLogs(t *testing.T) {
	d := t.TempDir()
	os.MkdirAll(filepath.Join(d, "conf/logs"), 0o755)
	os.WriteFile(filepath.Join(d, "conf/a.conf"), nil, 0o644)
	os.WriteFile(filepath.Join(d, "conf/logs/error.log"), nil, 0o644)
	c := testCollector()
	c.addTree(filepath.Join(d, "conf"), "config")
	if c.items[filepath.Join(d, "conf/logs/error.log")] != nil || c.items[filepath.Join(d, "conf/a.conf")] == nil {
		t.Fatalf("items %v", keys(c))
	}
	if c.runtime[filepath.Join(d, "conf/logs")] == "" {
		t.Fatalf("log dir not a runtime dir: %v", c.runtime)
	}
	c.addTree("/", "data:root")
	if len(c.notes) != 1 {
		t.Fatalf("capturing / was not refused with a note: %v", c.notes)
	}
}

func TestCollectorExclude(t *testing.T) {
	d := t.TempDir()
	os.MkdirAll(filepath.Join(d, "conf/cache"), 0o755)
	for _, f := range []string{"conf/a.conf", "conf/a.conf.bak", "conf/cache/x"} {
		os.WriteFile(filepath.Join(d, f), nil, 0o644)
	}
	c := newCollector(slog.New(slog.NewTextHandler(io.Discard, nil)), []string{"*.bak", filepath.Join(d, "conf/cache")}, false)
	c.addTree(filepath.Join(d, "conf"), "config")
	var got []string
	for p := range c.items {
		got = append(got, strings.TrimPrefix(p, d))
	}
	sort.Strings(got)
	if strings.Join(got, " ") != "/conf /conf/a.conf" {
		t.Fatalf("items %v", got)
	}
}

func TestCollectorSkipsOwnOutput(t *testing.T) {
	d := t.TempDir()
	os.WriteFile(filepath.Join(d, "index.html"), nil, 0o644)
	os.WriteFile(filepath.Join(d, "a.tar.zst"), nil, 0o644)
	os.WriteFile(filepath.Join(d, ".a.tar.zst.tmp-123"), nil, 0o644)
	c := testCollector()
	c.skip[filepath.Join(d, "a.tar.zst")] = true
	c.addTree(d, "data:root")
	if len(c.items) != 2 || c.items[filepath.Join(d, "index.html")] == nil {
		t.Fatalf("items %v", keys(c))
	}
}
