//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/internal/testbed"
)

// TestAgentUploadedOnce: the first `migrate facts` on a host uploads the
// agent to its content-addressed path; the second finds it there and sends
// no binary: same inode and mtime, no upload in the -v log, and sshd
// received less than a tenth of the binary's size over that connection.
// Each run uses one SSH connection for all its sessions.
func TestAgentUploadedOnce(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t, testbed.Options{})
	sum := fileSHA256(t, testbed.Binary(t))
	agentPath := "/var/lib/migrate/agent/" + sum + "/migrate"

	binSize := fileSize(t, testbed.Binary(t))
	_, stderr, code := bed.Migrate(t, "-v", "facts", bed.New.SSHSpec())
	if code != 0 {
		t.Fatalf("first facts: exit %d\n%s", code, stderr)
	}
	conns := waitConnections(t, bed.New.SSHD(), 1)
	if conns[0].received < binSize {
		t.Errorf("first run: sshd received %d bytes, less than the %d-byte agent", conns[0].received, binSize)
	}
	if !strings.Contains(stderr, "uploading agent") {
		t.Errorf("first run: no upload in the -v log:\n%s", stderr)
	}
	first, err := bed.New.Stat(agentPath)
	if err != nil {
		t.Fatalf("agent not at its content-addressed path on new: %v", err)
	}
	if got := fileSHA256(t, bed.New.Path(agentPath)); got != sum {
		t.Fatalf("uploaded agent has sha256 %s, want %s", got, sum)
	}
	if first.Mode().Perm()&0o100 == 0 {
		t.Errorf("agent mode %v is not executable", first.Mode())
	}
	// Uploads land in the host's private /var/lib/migrate only.
	if _, err := bed.Old.Stat("/var/lib/migrate/agent"); err == nil {
		t.Error("old sees the agent uploaded to new")
	}
	if _, err := os.Stat(agentPath); err == nil {
		t.Error("the root namespace sees the agent uploaded to new")
	}
	entries, _ := os.ReadDir(bed.New.Path("/var/lib/migrate/agent/" + sum))
	if len(entries) != 1 {
		t.Errorf("agent directory holds %d entries (temp files left?)", len(entries))
	}

	_, stderr, code = bed.Migrate(t, "-v", "facts", bed.New.SSHSpec())
	if code != 0 {
		t.Fatalf("second facts: exit %d\n%s", code, stderr)
	}
	conns = waitConnections(t, bed.New.SSHD(), 2)
	if conns[1].received > binSize/10 {
		t.Errorf("second run: sshd received %d bytes (the agent is %d)", conns[1].received, binSize)
	}
	if strings.Contains(stderr, "uploading agent") {
		t.Errorf("second run uploaded the agent again:\n%s", stderr)
	}
	second, err := bed.New.Stat(agentPath)
	if err != nil {
		t.Fatal(err)
	}
	a, b := first.Sys().(*syscall.Stat_t), second.Sys().(*syscall.Stat_t)
	if a.Ino != b.Ino || !first.ModTime().Equal(second.ModTime()) {
		t.Errorf("agent file replaced: inode %d -> %d, mtime %v -> %v", a.Ino, b.Ino, first.ModTime(), second.ModTime())
	}
	if dirs, _ := filepath.Glob(bed.New.Path("/var/lib/migrate/agent/*")); len(dirs) != 1 {
		t.Errorf("agent dirs on new: %v", dirs)
	}
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestAgentWrongArchitecture: an agent binary built for another machine
// (here: migrate with its ELF e_machine patched to AArch64, pointed at by
// MIGRATE_AGENT_BINARY) is refused with a clear error before any upload.
func TestAgentWrongArchitecture(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t, testbed.Options{})
	b, err := os.ReadFile(testbed.Binary(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 20 || string(b[:4]) != "\x7fELF" || b[5] != 1 {
		t.Fatalf("the migrate binary is not a little-endian ELF")
	}
	b[18], b[19] = byte(elf.EM_AARCH64), byte(elf.EM_AARCH64>>8)
	fake := filepath.Join(t.TempDir(), "migrate-arm64")
	if err := os.WriteFile(fake, b, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := bed.MigrateCmd(ctx, t, "facts", bed.New.SSHSpec())
	cmd.Env = append(cmd.Env, "MIGRATE_AGENT_BINARY="+fake)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil {
		t.Fatal("facts with an AArch64 agent on an x86-64 host succeeded")
	}
	t.Logf("stderr:\n%s", stderr.String())
	lines := nonHintLines(stderr.String())
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "migrate: error: ") ||
		!strings.Contains(lines[0], "x86_64") || !strings.Contains(stderr.String(), "migrate: hint: ") {
		t.Errorf("want one error line naming the host's x86_64 and a hint, got:\n%s", stderr.String())
	}
	if entries, _ := os.ReadDir(bed.New.Path("/var/lib/migrate/agent")); len(entries) != 0 {
		t.Errorf("something was uploaded: %v", entries)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// sshConn is one closed connection as sshd's log tells it.
type sshConn struct {
	logins   int   // "Accepted publickey" lines
	received int64 // bytes sshd received
}

// waitConnections waits until sshd has logged the end of n connections
// (each logged "Transferred: sent X, received Y bytes") and returns them.
// It fails the test when a connection authenticated more than once: a
// migrate run must reuse one connection for all its sessions.
func waitConnections(t *testing.T, sshd *testbed.Proc, n int) []sshConn {
	t.Helper()
	var conns []sshConn
	testbed.WaitFor(t, fmt.Sprintf("sshd to log %d closed connections", n), 10*time.Second, func() error {
		conns = nil
		logins := 0
		for _, line := range strings.Split(sshd.Log(), "\n") {
			if strings.HasPrefix(line, "Accepted publickey for ") {
				logins++
			}
			var sent, recv int64
			if _, err := fmt.Sscanf(line, "Transferred: sent %d, received %d bytes", &sent, &recv); err == nil {
				conns = append(conns, sshConn{logins, recv})
				logins = 0
			}
		}
		if len(conns) < n {
			return fmt.Errorf("%d so far", len(conns))
		}
		return nil
	})
	if len(conns) != n {
		t.Fatalf("sshd logged %d connections, want %d:\n%s", len(conns), n, sshd.Log())
	}
	for i, c := range conns {
		if c.logins != 1 {
			t.Errorf("connection %d authenticated %d times", i+1, c.logins)
		}
	}
	return conns
}
