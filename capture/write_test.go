package capture

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fileManifest builds a manifest for real files in dir, hashed now.
func fileManifest(t *testing.T, files ...string) *Manifest {
	t.Helper()
	m := &Manifest{Version: ManifestVersion, Kind: KindFull, Created: time.Now()}
	for _, f := range files {
		e := Entry{Path: f, Type: TypeFile, Mode: 0o644, Reasons: []string{"test"}}
		if err := hashEntry(&e); err != nil {
			t.Fatal(err)
		}
		m.Entries = append(m.Entries, e)
	}
	return m
}

// TestWriteFileSourceChanges: a file that vanishes after collection is
// dropped with a note; one that changes is re-read; both end in a valid
// archive.
func TestWriteFileSourceChanges(t *testing.T) {
	d := t.TempDir()
	a, b, c := filepath.Join(d, "a"), filepath.Join(d, "b"), filepath.Join(d, "c")
	for _, f := range []string{a, b, c} {
		os.WriteFile(f, []byte("original "+f), 0o644)
	}
	m := fileManifest(t, a, b, c)
	os.Remove(b)
	os.WriteFile(c, []byte("changed after collection"), 0o644)
	out := filepath.Join(t.TempDir(), "x.tar.zst")
	if err := WriteFile(context.Background(), out, m); err != nil {
		t.Fatal(err)
	}
	r, err := OpenArchive(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Verify(); err != nil {
		t.Fatal(err)
	}
	got := r.Manifest()
	if got.Lookup(b) != nil || got.Lookup(c) == nil || got.Lookup(c).Size != int64(len("changed after collection")) {
		t.Fatalf("entries %+v", got.Entries)
	}
	notes := strings.Join(got.Notes, "\n")
	if !strings.Contains(notes, "vanished during capture, skipped: "+b) || !strings.Contains(notes, "changed during capture, re-read: "+c) {
		t.Fatalf("notes %q", notes)
	}
}

// TestWriteFileFullDisk: a write error on the output leaves nothing behind
// and carries a hint. /dev/full fails every write with ENOSPC.
func TestWriteFileFullDisk(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	d := t.TempDir()
	f := filepath.Join(d, "a")
	os.WriteFile(f, []byte("x"), 0o644)
	m := fileManifest(t, f)
	out, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skip(err)
	}
	defer out.Close()
	err = Write(out, m, OpenFile)
	if err == nil {
		// zstd buffers: the error may only appear at close; Write closes.
		t.Fatal("writing to /dev/full succeeded")
	}
	if he := outputError(err); !strings.Contains(he.Error(), "no space left") {
		t.Fatalf("err = %v", he)
	}
}
