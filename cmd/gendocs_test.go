package cmd

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestGeneratedDocsCurrent fails when docs/cli or docs/man differ from
// what the command tree generates: run `go run ./cmd/migrate gen-docs`.
func TestGeneratedDocsCurrent(t *testing.T) {
	dir := t.TempDir()
	f := &Factory{IO: IOStreams{Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}}}
	if err := genDocs(NewCmdRoot(f), dir); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"cli", "man"} {
		want, _ := filepath.Glob(filepath.Join(dir, sub, "*"))
		have, _ := filepath.Glob(filepath.Join("..", "docs", sub, "*"))
		if len(want) != len(have) {
			t.Fatalf("docs/%s has %d pages, the command tree makes %d: run `go run ./cmd/migrate gen-docs`", sub, len(have), len(want))
		}
		for _, w := range want {
			a, _ := os.ReadFile(w)
			b, err := os.ReadFile(filepath.Join("..", "docs", sub, filepath.Base(w)))
			if err != nil || !bytes.Equal(a, b) {
				t.Fatalf("docs/%s/%s is not current: run `go run ./cmd/migrate gen-docs`", sub, filepath.Base(w))
			}
		}
	}
}
