package transfer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"github.com/migrate-tool/migrate/internal/testenv"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/capture"
	"github.com/migrate-tool/migrate/internal/agent"
)

// testArchive builds an archive from in-memory file bodies plus extra
// entries and returns its path.
type testFS struct {
	m      capture.Manifest
	bodies map[string][]byte
}

func newTestFS(service string) *testFS {
	return &testFS{m: capture.Manifest{Version: capture.ManifestVersion, Kind: capture.KindFull, Service: service,
		Host: "old", Created: time.Unix(1700000000, 0).UTC()}, bodies: map[string][]byte{}}
}

var mtime = time.Unix(1600000000, 0).UTC()

func (f *testFS) dir(p string) *testFS {
	f.m.Entries = append(f.m.Entries, capture.Entry{Path: p, Type: capture.TypeDir, Mode: 0o755, MTime: mtime, Reasons: []string{"test"}})
	return f
}

func (f *testFS) file(p string, body []byte) *testFS {
	sum := sha256.Sum256(body)
	f.bodies[p] = body
	f.m.Entries = append(f.m.Entries, capture.Entry{Path: p, Type: capture.TypeFile, Mode: 0o644, Size: int64(len(body)),
		SHA256: hex.EncodeToString(sum[:]), MTime: mtime, Reasons: []string{"test"}})
	return f
}

func (f *testFS) entry(e capture.Entry) *testFS {
	if e.MTime.IsZero() {
		e.MTime = mtime
	}
	e.Reasons = []string{"test"}
	f.m.Entries = append(f.m.Entries, e)
	return f
}

func (f *testFS) write(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), f.m.Service+".tar.zst")
	err := capture.Create(p, &f.m, func(e *capture.Entry) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(f.bodies[e.Path])), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// pipe returns an in-process agent serving the registered handlers.
func pipe(t *testing.T) *agent.Client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := agent.Pipe(ctx, agent.Handlers(), slog.New(slog.DiscardHandler))
	t.Cleanup(func() { c.Close(); cancel() })
	return c
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root (chown, mknod)")
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
