package capture

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestArrange: the provisional paths keep their order, the others follow,
// sorted; paths gone since are dropped.
func TestArrange(t *testing.T) {
	p := &precompressed{order: []string{"/a", "/a/x", "/b", "/c"}}
	got := p.arrange([]string{"/a", "/a/w", "/a/x", "/b", "/d", "/d/e"})
	if want := "/a /a/x /b /a/w /d /d/e"; strings.Join(got, " ") != want {
		t.Fatalf("arrange = %v, want %s", got, want)
	}
	var none *precompressed
	if got := none.arrange([]string{"/b", "/a"}); strings.Join(got, " ") != "/b /a" {
		t.Fatalf("nil arrange = %v", got)
	}
}

// TestPrecompressReuse: segments compressed ahead are reused where their
// entries are unchanged and recompressed where one changed; the archive
// verifies and extracts the same either way.
func TestPrecompressReuse(t *testing.T) {
	d := t.TempDir()
	rng := rand.New(rand.NewSource(1))
	var paths []string
	for i := 0; i < 20; i++ { // more than maxFrame: several segments even on one CPU
		p := filepath.Join(d, fmt.Sprintf("f%02d", i))
		b := make([]byte, 1<<20) // half random, half text: compressible
		rng.Read(b[:len(b)/2])
		copy(b[len(b)/2:], bytes.Repeat([]byte(fmt.Sprintf("line %d of a text file\n", i)), len(b)))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	sp, err := newSpool()
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	ctx := context.Background()
	c := newCollector(slog.New(slog.DiscardHandler), nil, false)
	c.acc = readAccounts()
	for _, p := range paths {
		c.mark(p, "test")
	}
	c.addParents()
	es, err := c.stat(c.sorted(), c.acc, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	copies := sp.prefetchEach(ctx, paths)
	copied := map[string]<-chan struct{}{}
	for i, p := range paths {
		copied[p] = copies[i]
	}
	p := &precompressed{sp: sp, first: map[string]*segment{}, dirs: map[string]Entry{}, done: make(chan struct{}), cancel: func() {}}
	sp.pre = p
	for _, e := range es {
		p.order = append(p.order, e.Path)
		if e.Type == TypeDir {
			p.dirs[e.Path] = e
		}
	}
	p.plan(es, copied)
	if len(p.segs) < 2 {
		t.Fatalf("%d segments planned for 20 MiB", len(p.segs))
	}
	for _, seg := range p.segs {
		p.seal(seg)
		if seg.bad {
			t.Fatalf("segment at %s bad", seg.es[0].Path)
		}
	}
	p.compress(ctx)
	close(p.done)

	// One file changes after it was compressed: its segment is recompressed.
	// A file appears in the first segment's directory: it goes after the
	// provisional entries, and the directory keeps the mtime seen first.
	changed := paths[len(paths)-1]
	if err := os.WriteFile(changed, []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(changed, time.Now().Add(time.Hour), time.Now().Add(time.Hour))
	added := filepath.Join(d, "added")
	if err := os.WriteFile(added, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(d, time.Now().Add(2*time.Hour), time.Now().Add(2*time.Hour))
	c.mark(added, "test")
	c.snap = sp
	final, err := c.entries(ctx, c.acc, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if last := final[len(final)-1].Path; last != added {
		t.Fatalf("last entry %s, want the added %s", last, added)
	}
	m := &Manifest{Version: ManifestVersion, Kind: KindFull, Created: time.Now(), Entries: final}
	var buf bytes.Buffer
	if err := writeArchive(&buf, m, sp.open, false, p, nil); err != nil {
		t.Fatal(err)
	}
	reused, redone := 0, 0
	for _, seg := range p.segs {
		if seg.skip.Load() {
			redone++
		} else {
			reused++
		}
	}
	if reused == 0 || redone != 1 {
		t.Fatalf("segments reused %d, recompressed %d; want all but the changed one's", reused, redone)
	}
	n := 0
	err = WalkStream("test", &buf, func(*Manifest) error { return nil }, func(*Entry, io.Reader) error {
		n++
		return nil
	})
	if err != nil || n != len(final) {
		t.Fatalf("walk: %d entries, %v", n, err)
	}
}

// A segment with a file the spool lacks (it could not be copied) is bad:
// never claimed, so its entries are written with the archive.
func TestSealMissingFile(t *testing.T) {
	sp, err := newSpool()
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	p := &precompressed{sp: sp, first: map[string]*segment{}}
	gone := make(chan struct{})
	close(gone) // "copied": the copy failed
	es := []Entry{{Path: "/nonexistent/migrate-test-file", Type: TypeFile, Size: 10, Mode: 0o644}}
	p.plan(es, map[string]<-chan struct{}{es[0].Path: gone})
	p.seal(p.segs[0])
	if !p.segs[0].bad {
		t.Fatal("a segment whose file is not in the spool was not marked bad")
	}
	if got := p.claim(es); len(got) != 0 {
		t.Fatalf("a bad segment was claimed: %v", got)
	}
}
