//go:build e2e

package transfer_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/internal/testbed"
)

// summary is the --json summary record of migrate transfer.
type summary struct {
	Type         string   `json:"type"`
	Files        int      `json:"files"`
	FilesSent    int      `json:"files_sent"`
	BytesArchive int64    `json:"bytes_archive"`
	BytesSent    int64    `json:"bytes_sent"`
	BytesSaved   int64    `json:"bytes_saved"`
	BytesPresent int64    `json:"bytes_present"`
	BytesReused  int64    `json:"bytes_reused"`
	Resent       []string `json:"resent"`
}

func lastSummary(t *testing.T, stdout string) summary {
	t.Helper()
	var s summary
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		var rec summary
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Type == "summary" {
			s = rec
		}
	}
	if s.Type == "" {
		t.Fatalf("no summary in %q", stdout)
	}
	return s
}

const (
	bigFiles = 24
	bigSize  = 4 << 20
)

// TestE2ENginx captures nginx on old, ships it to new (killing the first
// transfer half way and damaging a received file), starts it in its
// chroot there, compares every docroot file over HTTP from client, and
// removes it without residue.
func TestE2ENginx(t *testing.T) {
	bed := testbed.New(t, testbed.Options{})
	testbed.RequireTools(t, "nginx", "curl")
	ctx := context.Background()

	// Docroot on old: small text files and incompressible big ones.
	docs := map[string][]byte{"/index.html": []byte("<h1>old</h1>\n"), "/sub/page.txt": []byte("a page\n")}
	for i := 0; i < bigFiles; i++ {
		b := make([]byte, bigSize)
		rand.Read(b)
		docs[fmt.Sprintf("/big/%02d.bin", i)] = b
	}
	for p, b := range docs {
		bed.Old.WriteFile(t, "/srv/www"+p, b, 0o644)
	}
	bed.Old.StartNginx(t, testbed.NginxOptions{Port: 80, Docroot: "/srv/www"})

	archive := filepath.Join(t.TempDir(), "nginx.tar.zst")
	if out, errOut, code := bed.Migrate(t, "capture", "--from", bed.Old.SSHSpec(), "--service", "nginx", "-o", archive); code != 0 {
		t.Fatalf("capture: exit %d\n%s\n%s", code, out, errOut)
	}

	// First transfer, killed once half of the big files are in the root.
	rootOnNew := "/srv/migrate/nginx/root"
	cmd := bed.MigrateCmd(ctx, t, "--json", "transfer", archive, "--to", bed.New.SSHSpec())
	var out1 bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out1, &out1
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		ents, _ := os.ReadDir(bed.New.Path(rootOnNew + "/srv/www/big"))
		n := 0
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), ".migrate-tmp") {
				n++
			}
		}
		if n >= bigFiles/2 {
			killed = cmd.Process.Signal(syscall.SIGKILL) == nil
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	cmd.Wait()
	if !killed {
		t.Fatalf("transfer ended before it could be killed half way:\n%s", out1.String())
	}
	if _, err := bed.New.Stat("/srv/migrate/nginx/complete"); err == nil {
		t.Fatal("interrupted root is marked complete")
	}
	// Damage one received file before the final verification.
	ents, _ := os.ReadDir(bed.New.Path(rootOnNew + "/srv/www/big"))
	var damaged string
	var present int64
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".migrate-tmp") {
			continue
		}
		p := bed.New.Path(rootOnNew + "/srv/www/big/" + e.Name())
		if damaged == "" {
			damaged = p
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 0x55
			os.WriteFile(p, b, 0o644)
			continue
		}
		present += bigSize
	}

	// Rerun: only the remainder (and the damaged file) is sent.
	stdout, stderr, code := bed.Migrate(t, "--json", "transfer", archive, "--to", bed.New.SSHSpec())
	if code != 0 {
		t.Fatalf("transfer rerun: exit %d\n%s", code, stderr)
	}
	s := lastSummary(t, stdout)
	t.Logf("rerun: %+v", s)
	remainder := int64(bigFiles)*bigSize - present
	if s.BytesPresent < present {
		t.Errorf("rerun found %d bytes present, %d were received", s.BytesPresent, present)
	}
	if s.BytesSent > remainder+remainder/20+(1<<20) || s.BytesSent < remainder-bigSize {
		t.Errorf("rerun sent %d bytes, the remainder is %d", s.BytesSent, remainder)
	}
	if b, _ := os.ReadFile(damaged); !bytes.Equal(b, docs["/big/"+filepath.Base(damaged)]) {
		t.Error("damaged file not repaired")
	}

	// Start in the chroot on new and compare every docroot file from client.
	if _, stderr, code := bed.Migrate(t, "service", "start", "nginx", "--on", bed.New.SSHSpec()); code != 0 {
		t.Fatalf("service start: exit %d\n%s", code, stderr)
	}
	for p := range docs {
		oldBody := curl(t, bed, bed.Old.Addr, p)
		newBody := curl(t, bed, bed.New.Addr, p)
		if !bytes.Equal(oldBody, newBody) || !bytes.Equal(newBody, docs[p]) {
			t.Errorf("%s differs between old (%d bytes) and new (%d bytes)", p, len(oldBody), len(newBody))
		}
	}
	stdout, _, code = bed.Migrate(t, "--json", "service", "status", "nginx", "--on", bed.New.SSHSpec())
	if code != 0 || !strings.Contains(stdout, `"status":"running"`) {
		t.Fatalf("status: %d %s", code, stdout)
	}

	// Bad input: unknown name, a start that fails, a full disk.
	_, stderr, code = bed.Migrate(t, "service", "status", "nosuch", "--on", bed.New.SSHSpec())
	if code != 1 || !strings.Contains(stderr, "no such service") || !strings.Contains(stderr, "hint:") {
		t.Errorf("unknown name: exit %d %s", code, stderr)
	}
	badStart(t, bed, archive)
	diskFull(t, bed, archive)

	// Remove: no mounts, no processes, no files.
	if _, stderr, code := bed.Migrate(t, "service", "remove", "nginx", "--on", bed.New.SSHSpec()); code != 0 {
		t.Fatalf("remove: exit %d\n%s", code, stderr)
	}
	noResidue(t, bed, "/srv/migrate/nginx")
}

func curl(t *testing.T, bed *testbed.Bed, addr, p string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := bed.Client.Exec(ctx, "curl", "-sSf", "--max-time", "10", "http://"+addr+p)
	if err != nil {
		t.Fatalf("curl %s%s: %v", addr, p, err)
	}
	return out
}

// badStart ships the archive as a second service, breaks its nginx config
// and checks that start fails with nginx's complaint and a non-zero exit.
func badStart(t *testing.T, bed *testbed.Bed, archive string) {
	t.Helper()
	// Everything of a second copy is on the target already (nginx's root,
	// the target's own files): next to nothing is sent.
	stdout, stderr, code := bed.Migrate(t, "--json", "transfer", archive, "--to", bed.New.SSHSpec(), "--name", "broken")
	if code != 0 {
		t.Fatalf("transfer broken: %s", stderr)
	}
	if s := lastSummary(t, stdout); s.BytesSent > s.BytesArchive/100 || s.BytesReused == 0 || s.FilesSent > 2 { // nginx's live log changed since
		t.Errorf("second copy sent %d of %d bytes: %+v", s.BytesSent, s.BytesArchive, s)
	}
	data, err := bed.New.ReadFile("/srv/migrate/broken/manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	var m struct{ Start []string }
	json.Unmarshal(data, &m)
	conf := ""
	for i, a := range m.Start {
		if a == "-c" && i+1 < len(m.Start) {
			conf = m.Start[i+1]
		}
	}
	if conf == "" {
		conf = "/etc/nginx/nginx.conf"
	}
	bed.New.WriteFile(t, "/srv/migrate/broken/root"+conf, []byte("this is not nginx syntax\n"), 0o644)
	_, stderr, code = bed.Migrate(t, "service", "start", "broken", "--on", bed.New.SSHSpec())
	if code == 0 || !strings.Contains(stderr, "failed to start") || !strings.Contains(stderr, "emerg") {
		t.Errorf("broken start: exit %d\n%s", code, stderr)
	}
	if _, stderr, code := bed.Migrate(t, "service", "remove", "broken", "--on", bed.New.SSHSpec()); code != 0 {
		t.Fatalf("remove broken: %s", stderr)
	}
	noResidue(t, bed, "/srv/migrate/broken")
}

// diskFull ships into a 16 MiB tmpfs: refused up front, nothing complete.
func diskFull(t *testing.T, bed *testbed.Bed, archive string) {
	t.Helper()
	bed.New.MustExec(t, "mkdir", "-p", "/srv/small")
	bed.New.MustExec(t, "mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", "/srv/small")
	defer bed.New.MustExec(t, "umount", "/srv/small")
	_, stderr, code := bed.Migrate(t, "transfer", archive, "--to", bed.New.SSHSpec(), "--dest", "/srv/small", "--no-reuse")
	if code == 0 || !strings.Contains(stderr, "not enough space") || !strings.Contains(stderr, "hint:") {
		t.Errorf("disk full: exit %d\n%s", code, stderr)
	}
	if _, err := bed.New.Stat("/srv/small/nginx/complete"); err == nil {
		t.Error("root on a full disk marked complete")
	}
}

func noResidue(t *testing.T, bed *testbed.Bed, dir string) {
	t.Helper()
	if _, err := bed.New.Stat(dir); err == nil {
		t.Errorf("%s still exists on new", dir)
	}
	mi := bed.New.MustExec(t, "cat", "/proc/self/mountinfo")
	if strings.Contains(mi, dir) {
		t.Errorf("mounts left under %s:\n%s", dir, mi)
	}
	procs := bed.New.MustExec(t, "sh", "-c", "for p in /proc/[0-9]*; do readlink $p/root; done 2>/dev/null")
	if strings.Contains(procs, dir) {
		t.Errorf("processes left in %s", dir)
	}
}
