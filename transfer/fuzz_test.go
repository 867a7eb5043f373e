package transfer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/migrate-tool/migrate/capture"
)

// FuzzCheck feeds a symlink entry and a file entry with arbitrary paths
// and targets through Check and, when accepted, writes them with Root:
// nothing may appear outside the root.
func FuzzCheck(f *testing.F) {
	f.Add("/lib", "usr/lib", "/lib/x")
	f.Add("/a", "../..", "/a/etc/passwd")
	f.Add("/a", "/", "/a/b")
	f.Add("/d/e", "../../../x", "/d/e/f")
	f.Add("/a", "b/../../c", "/c")
	f.Fuzz(func(t *testing.T, linkPath, linkTo, filePath string) {
		m := manifestOf(
			capture.Entry{Path: linkPath, Type: capture.TypeSymlink, Link: linkTo},
			capture.Entry{Path: filePath, Type: capture.TypeFile, SHA256: emptySHA},
		)
		pl, err := Check(m, nil)
		if err != nil {
			return
		}
		for _, real := range pl.Real {
			if !capture.CleanPath(real) {
				t.Fatalf("accepted, resolved to unclean path %q", real)
			}
		}
		if os.Geteuid() != 0 {
			return
		}
		sandbox := t.TempDir()
		r, err := OpenRoot(filepath.Join(sandbox, "root"))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		_ = r.Symlink(pl.Real[0], linkTo, Meta{})
		_ = r.WriteFile(pl.Real[1], strings.NewReader(""), 0, emptySHA, Meta{Mode: 0o644})
		ents, _ := os.ReadDir(sandbox)
		if len(ents) != 1 || ents[0].Name() != "root" {
			t.Fatalf("wrote outside the root: %v", ents)
		}
	})
}

const emptySHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
