package capture

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestApplyChainsDeltas(t *testing.T) {
	f := func(p, sum string) Entry { return Entry{Path: p, Type: TypeFile, SHA256: sum, Size: 1} }
	d := func(p string) Entry { return Entry{Path: p, Type: TypeDir} }
	base := &Manifest{Version: ManifestVersion, Kind: KindFull, Service: "web",
		Entries: []Entry{d("/srv"), d("/srv/www"), f("/srv/www/a", "1"), f("/srv/www/b", "1"), d("/srv/www/old"), f("/srv/www/old/x", "1")}}
	delta := &Manifest{Version: ManifestVersion, Kind: KindDelta, Service: "web",
		Entries: []Entry{f("/srv/www/a", "2"), f("/srv/www/c", "1")}, Deleted: []string{"/srv/www/b", "/srv/www/old"}}
	got, err := Apply(base, delta)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, e := range got.Entries {
		paths = append(paths, e.Path+"="+e.SHA256)
	}
	want := []string{"/srv=", "/srv/www=", "/srv/www/a=2", "/srv/www/c=1"}
	if got.Kind != KindFull || len(paths) != len(want) {
		t.Fatalf("got %s %v, want full %v", got.Kind, paths, want)
	}
	for i := range want {
		if paths[i] != want[i] {
			t.Fatalf("got %v, want %v", paths, want)
		}
	}
	if _, err := Apply(delta, base); err == nil {
		t.Fatal("applying a full manifest as a delta was accepted")
	}
}

func TestRescanStoppedService(t *testing.T) {
	dir := t.TempDir()
	www := filepath.Join(dir, "www")
	os.MkdirAll(www, 0o755)
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(www, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("keep", "same")
	write("change", "before")
	write("remove", "bye")
	c := newCollector(slog.New(slog.DiscardHandler), nil, false)
	c.addTree(www, "data:docroot")
	es, err := c.entries(context.Background(), readAccounts(), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	base := &Manifest{Version: ManifestVersion, Kind: KindFull, Service: "web", Entries: compact(es), Start: []string{"/usr/sbin/web"}}

	write("change", "after, longer")
	later := time.Now().Add(2 * time.Second)
	os.Chtimes(filepath.Join(www, "change"), later, later)
	write("added", "new")
	os.Remove(filepath.Join(www, "remove"))
	d, err := Rescan(context.Background(), base, Options{BaseDigest: "feedface"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, e := range d.Entries {
		if e.Type == TypeFile {
			got[filepath.Base(e.Path)] = true
		}
	}
	if len(got) != 2 || !got["change"] || !got["added"] {
		t.Fatalf("delta files %v, want change and added", got)
	}
	if len(d.Deleted) != 1 || filepath.Base(d.Deleted[0]) != "remove" {
		t.Fatalf("deleted %v", d.Deleted)
	}
	if d.Kind != KindDelta || d.Base != "feedface" || d.Start[0] != "/usr/sbin/web" {
		t.Fatalf("delta kind %s base %q start %v", d.Kind, d.Base, d.Start)
	}
}
