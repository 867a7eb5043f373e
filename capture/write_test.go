package capture

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"github.com/migrate-tool/migrate/internal/testenv"
	"io"
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
		testenv.Skip(t, "no /dev/full")
	}
	d := t.TempDir()
	f := filepath.Join(d, "a")
	os.WriteFile(f, []byte("x"), 0o644)
	m := fileManifest(t, f)
	out, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		testenv.Skip(t, err)
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

// TestSpoolSnapshot: the archive written by the spool holds exactly what
// was hashed even after the file changes, and a file growing during its
// own read is flagged in a note, not stored silently torn.
func TestSpoolSnapshot(t *testing.T) {
	d := t.TempDir()
	stable, growing := filepath.Join(d, "stable"), filepath.Join(d, "growing")
	os.WriteFile(stable, []byte("first version"), 0o644)
	os.WriteFile(growing, make([]byte, 32<<20), 0o644)
	sp, err := newSpool()
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	e := Entry{Path: stable, Type: TypeFile, Reasons: []string{"t"}}
	if note, err := sp.take(0, &e); err != nil || note != "" {
		t.Fatalf("take stable: %q %v", note, err)
	}
	os.WriteFile(stable, []byte("second, longer version"), 0o644)
	m := &Manifest{Version: ManifestVersion, Kind: KindFull, Entries: []Entry{e}}
	var buf bytes.Buffer
	if err := Write(&buf, m, sp.open); err != nil {
		t.Fatalf("archive from spool after the file changed: %v", err)
	}
	err = WalkStream("buf", &buf, func(*Manifest) error { return nil }, func(e *Entry, body io.Reader) error {
		b, _ := io.ReadAll(body)
		if string(b) != "first version" {
			t.Errorf("stored %q", b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		f, _ := os.OpenFile(growing, os.O_WRONLY|os.O_APPEND, 0)
		defer f.Close()
		for {
			select {
			case <-stop:
				return
			default:
				f.Write([]byte("x"))
			}
		}
	}()
	g := Entry{Path: growing, Type: TypeFile}
	note, err := sp.take(1, &g)
	close(stop)
	<-done
	if err != nil || !strings.Contains(note, "changed while being read 3 times") {
		t.Fatalf("take growing: note %q err %v", note, err)
	}
	rc, _ := sp.open(&g)
	h := sha256.New()
	n, _ := io.Copy(h, rc)
	if n != g.Size || hex.EncodeToString(h.Sum(nil)) != g.SHA256 {
		t.Fatal("spooled body does not match its entry")
	}
}
