package capture

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"github.com/migrate-tool/migrate/internal/testenv"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// memFiles serves file bodies from memory.
type memFiles map[string][]byte

func (m memFiles) open(e *Entry) (io.ReadCloser, error) {
	b, ok := m[e.Path]
	if !ok {
		return nil, &os.PathError{Op: "open", Path: e.Path, Err: fs.ErrNotExist}
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func testManifest(files memFiles) *Manifest {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m := &Manifest{Version: ManifestVersion, Kind: KindFull, Host: "src", Service: "nginx", Created: t0,
		Start:       []string{"nginx", "-g", "daemon off;"},
		Users:       []User{{Name: "www-data", UID: 33, GID: 33, Home: "/var/www", Shell: "/usr/sbin/nologin"}},
		RuntimeDirs: []Dir{{Path: "/run", Mode: 0o755}},
		Ports:       []Port{{Proto: "tcp", Addr: "0.0.0.0", Port: 80}}}
	m.Entries = []Entry{
		{Path: "/etc", Type: TypeDir, Mode: 0o755, MTime: t0, Reasons: []string{"parent"}},
		{Path: "/etc/a.conf", Type: TypeFile, Mode: 0o644, Size: int64(len(files["/etc/a.conf"])), SHA256: sum(files["/etc/a.conf"]), MTime: t0, Reasons: []string{"conffile-changed"}},
		{Path: "/etc/b", Type: TypeFile, Mode: 0o4755, UID: 0, GID: 0, User: "root", Group: "root", MTime: t0, Reasons: []string{"package:x"}},
		{Path: "/etc/b2", Type: TypeHardlink, Link: "/etc/b", Mode: 0o4755, Reasons: []string{"hardlink"}},
		{Path: "/etc/empty", Type: TypeFile, Mode: 0o600, Reasons: []string{"admin-added"}},
		{Path: "/lib", Type: TypeSymlink, Link: "usr/lib", Mode: 0o777, Reasons: []string{"usrmerge"}},
		{Path: "/dev/null", Type: TypeCharDev, Major: 1, Minor: 3, Mode: 0o666, Reasons: []string{"device"}},
	}
	return m
}

func testFiles() memFiles {
	big := make([]byte, 1<<20) // incompressible, so it spans many zstd blocks
	rand.New(rand.NewSource(1)).Read(big)
	return memFiles{"/etc/a.conf": []byte("hello\n"), "/etc/b": big, "/etc/empty": nil}
}

func TestArchiveRoundTrip(t *testing.T) {
	files := testFiles()
	m := testManifest(files)
	out := filepath.Join(t.TempDir(), "a.tar.zst")
	if err := Create(out, m, files.open); err != nil {
		t.Fatal(err)
	}
	r, err := OpenArchive(out)
	if err != nil {
		t.Fatal(err)
	}
	got := r.Manifest()
	if got.Service != "nginx" || len(got.Entries) != len(m.Entries) || got.Users[0].Name != "www-data" {
		t.Fatalf("manifest = %+v", got)
	}
	if e := got.Lookup("/etc/b"); e.SHA256 != sum(files["/etc/b"]) || e.Size != int64(len(files["/etc/b"])) {
		t.Fatalf("missing sha256 was not filled: %+v", e)
	}
	var order []string
	err = r.Walk(func(e *Entry, body io.Reader) error {
		order = append(order, e.Path)
		if e.Type != TypeFile {
			if body != nil {
				t.Errorf("%s: body for non-file", e.Path)
			}
			return nil
		}
		b, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		if !bytes.Equal(b, files[e.Path]) {
			t.Errorf("%s: body differs", e.Path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(order, " ") != "/etc /etc/a.conf /etc/b /etc/b2 /etc/empty /lib /dev/null" {
		t.Fatalf("order %v", order)
	}
	if err := r.Verify(); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
		t.Errorf("archive mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestArchiveChangedSource(t *testing.T) {
	tests := []struct {
		name  string
		body  []byte
		isErr error
	}{
		{"grew", []byte("hello\nmore\n"), ErrChanged},
		{"shrank", []byte("hel"), ErrChanged},
		{"same size", []byte("HELLO\n"), ErrChanged},
		{"vanished", nil, fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := testFiles()
			m := testManifest(files)
			if tt.body == nil {
				delete(files, "/etc/a.conf")
			} else {
				files["/etc/a.conf"] = tt.body
			}
			dir := t.TempDir()
			out := filepath.Join(dir, "a.tar.zst")
			err := Create(out, m, files.open)
			var se *SourceError
			if !errors.As(err, &se) || se.Path != "/etc/a.conf" || !errors.Is(err, tt.isErr) {
				t.Fatalf("err = %v, want SourceError for /etc/a.conf wrapping %v", err, tt.isErr)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Fatalf("left behind: %v", ents)
			}
		})
	}
}

func TestArchiveCorruption(t *testing.T) {
	files := testFiles()
	m := testManifest(files)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.tar.zst")
	if err := Create(good, m, files.open); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(good)

	tests := []struct {
		name      string
		data      []byte
		wantEntry string
		isErr     error
	}{
		{"truncated half", raw[:len(raw)/2], "/etc/b", nil},
		{"truncated at end", raw[:len(raw)-8], "", nil},
		{"garbage", []byte("not an archive at all"), "", nil},
		{"flipped byte", flip(raw, len(raw)*3/4), "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_"))
			os.WriteFile(p, tt.data, 0o600)
			r, err := OpenArchive(p)
			if err == nil {
				err = r.Verify()
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want *ParseError", err)
			}
			if tt.wantEntry != "" && pe.Entry != tt.wantEntry {
				t.Fatalf("first bad entry %q, want %q (%v)", pe.Entry, tt.wantEntry, err)
			}
			if !strings.Contains(err.Error(), p) {
				t.Fatalf("error does not name the archive: %v", err)
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x55
	return c
}

// TestArchiveChecksumMismatch builds an archive whose body disagrees with
// its manifest (as a tampered or bit-rotted archive would after zstd's
// own checksum is recomputed) and checks Verify names the entry.
func TestArchiveChecksumMismatch(t *testing.T) {
	files := testFiles()
	m := testManifest(files)
	m.Entries[1].SHA256 = sum([]byte("HELLO\n")) // manifest claims other content, same size
	var buf bytes.Buffer
	err := Write(&buf, m, files.open)
	if !errors.Is(err, ErrChanged) {
		t.Fatalf("Write err = %v, want ErrChanged", err)
	}
	// Write the archive with content matching the claimed sum, then swap
	// the body bytes in the tar stream before compression.
	good := memFiles{"/etc/a.conf": []byte("HELLO\n"), "/etc/b": files["/etc/b"], "/etc/empty": nil}
	p := filepath.Join(t.TempDir(), "x.tar.zst")
	if err := Create(p, m, good.open); err != nil {
		t.Fatal(err)
	}
	r, err := OpenArchive(p)
	if err != nil {
		t.Fatal(err)
	}
	r.m.Entries[1].SHA256 = sum([]byte("hello\n")) // reader expects the other content
	err = r.Verify()
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Entry != "/etc/a.conf" || !errors.Is(err, ErrChecksum) {
		t.Fatalf("Verify = %v, want checksum ParseError for /etc/a.conf", err)
	}
}

func TestManifestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(m *Manifest)
		want string
	}{
		{"ok", func(m *Manifest) {}, ""},
		{"relative", func(m *Manifest) { m.Entries[0].Path = "etc" }, "not a clean absolute path"},
		{"dotdot", func(m *Manifest) { m.Entries[0].Path = "/etc/../../x" }, "not a clean absolute path"},
		{"dup", func(m *Manifest) { m.Entries[1].Path = "/etc" }, "listed twice"},
		{"hardlink forward", func(m *Manifest) { m.Entries[3].Link = "/etc/empty" }, "hardlink source"},
		{"version", func(m *Manifest) { m.Version = 99 }, "version 99"},
		{"type", func(m *Manifest) { m.Entries[0].Type = "socket" }, "unknown type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := testFiles()
			m := testManifest(files)
			m.Entries[2].SHA256 = sum(files["/etc/b"])
			m.Entries[4].SHA256 = sum(nil)
			tt.edit(m)
			err := m.Validate()
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}

// FuzzOpenArchive: arbitrary bytes never panic the reader, and whatever
// it accepts verifies or fails with a *ParseError.
func FuzzOpenArchive(f *testing.F) {
	files := memFiles{"/etc/a.conf": []byte("hello\n"), "/etc/b": []byte("bbbb"), "/etc/empty": nil}
	var buf bytes.Buffer
	if err := Write(&buf, testManifest(files), files.open); err == nil {
		f.Add(buf.Bytes())
	}
	f.Add([]byte("(\xb5/\xfd garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "a.tar.zst")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := OpenArchive(p)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("OpenArchive error %T %v is not a ParseError", err, err)
			}
			return
		}
		err = r.Verify()
		var pe *ParseError
		if err != nil && !errors.As(err, &pe) {
			t.Fatalf("Verify error %T %v is not a ParseError", err, err)
		}
	})
}

// TestArchiveOpensWithTar: GNU tar lists and extracts an archive of
// several zstd frames, manifest.json first.
func TestArchiveOpensWithTar(t *testing.T) {
	if _, err := exec.LookPath("zstd"); err != nil {
		testenv.Skip(t, "no zstd")
	}
	big := make([]byte, 40<<20) // more than two frames
	rand.New(rand.NewSource(2)).Read(big[:5<<20])
	files := memFiles{"/etc/a.conf": []byte("hello\n"), "/etc/b": big, "/etc/empty": nil}
	m := testManifest(files)
	dir := t.TempDir()
	out := filepath.Join(dir, "a.tar.zst")
	if err := Create(out, m, files.open); err != nil {
		t.Fatal(err)
	}
	list, err := exec.Command("tar", "--zstd", "-tf", out).CombinedOutput()
	if err != nil {
		t.Fatalf("tar -t: %v %s", err, list)
	}
	names := strings.Fields(string(list))
	if names[0] != "manifest.json" || len(names) != len(m.Entries)+1 {
		t.Fatalf("tar lists %v", names)
	}
	x := filepath.Join(dir, "x")
	os.Mkdir(x, 0o755)
	if b, err := exec.Command("tar", "--zstd", "-xf", out, "-C", x, "root/etc/b").CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v %s", err, b)
	}
	if got, _ := os.ReadFile(filepath.Join(x, "root/etc/b")); !bytes.Equal(got, big) {
		t.Fatal("extracted body differs")
	}
}
