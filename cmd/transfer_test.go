package cmd

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"github.com/migrate-tool/migrate/internal/testenv"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/capture"
)

func TestTransferFlags(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"transfer", "a.tar.zst"}, "--to HOST is required"},
		{[]string{"transfer", "--to", "local"}, "give the ARCHIVE to ship, or --from HOST --service NAME"},
		{[]string{"transfer", "a.tar.zst", "--from", "local", "--to", "local"}, "give either ARCHIVE or --from HOST, not both"},
		{[]string{"transfer", "--from", "local", "--to", "local"}, "--from needs --service NAME"},
		{[]string{"transfer", "a.tar.zst", "--service", "nginx", "--to", "local"}, "--service is for --from; an archive names its service itself"},
		{[]string{"transfer", "a.tar.zst", "--to", "local", "--name", "../x"}, `bad service name "../x"`},
		{[]string{"transfer", "a.tar.zst", "--to", "local", "--dest", "rel/dir"}, `--dest "rel/dir" is not an absolute path`},
		{[]string{"service", "start", "web", "--dest", "/srv/x"}, "--on HOST is required"},
		{[]string{"service", "stop", "--on", "local"}, "requires at least 1 arg(s), only received 0"},
		{[]string{"service", "remove", "a/b", "--on", "local"}, `bad service name "a/b"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, stderr, code := runMigrate(t, tt.args...)
			if code != 2 || !strings.Contains(stderr, "migrate: error: "+tt.wantErr+"\n") {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr)
			}
		})
	}
}

func TestTransferOptionsFromFlags(t *testing.T) {
	var got *TransferOptions
	f := &Factory{IO: IOStreams{Out: io.Discard, ErrOut: io.Discard}}
	cmd := NewCmdTransfer(f, func(o *TransferOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"web.tar.zst", "--to", "ssh://root@10.0.0.2", "--name", "web", "--dest", "/var/chroots", "--no-reuse"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Archive != "web.tar.zst" || got.To != "ssh://root@10.0.0.2" || got.Name != "web" || got.Dest != "/var/chroots" || !got.NoReuse {
		t.Fatalf("%+v", got)
	}
}

// TestTransferLocalJSON ships a small archive to "local" and checks the
// summary record and the unknown-name error of service.
func TestTransferLocalJSON(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root (ownership)")
	}
	body := []byte("<h1>hi</h1>\n")
	sum := sha256.Sum256(body)
	m := &capture.Manifest{Version: capture.ManifestVersion, Kind: capture.KindFull, Service: "web", Host: "old", Created: time.Now(),
		Entries: []capture.Entry{
			{Path: "/srv", Type: capture.TypeDir, Mode: 0o755, Reasons: []string{"test"}},
			{Path: "/srv/index.html", Type: capture.TypeFile, Mode: 0o644, Size: int64(len(body)), SHA256: hex.EncodeToString(sum[:]), Reasons: []string{"test"}},
		}}
	arch := filepath.Join(t.TempDir(), "web.tar.zst")
	if err := capture.Create(arch, m, func(*capture.Entry) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }); err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	stdout, stderr, code := runMigrate(t, "--json", "transfer", arch, "--to", "local", "--dest", dest, "--no-reuse")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rec map[string]any
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["type"] != "summary" || rec["bytes_archive"] == nil || rec["bytes_sent"].(float64) <= 0 || rec["bytes_saved"] == nil || rec["name"] != "web" {
		t.Fatalf("summary: %v", rec)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "web/root/srv/index.html")); err != nil || !bytes.Equal(b, body) {
		t.Fatalf("shipped file: %q %v", b, err)
	}
	_, stderr, code = runMigrate(t, "service", "status", "nosuch", "--on", "local", "--dest", dest)
	if code != 1 || !strings.Contains(stderr, "migrate: error: status nosuch: service nosuch: no such service on the target") || !strings.Contains(stderr, "migrate: hint: ") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}
