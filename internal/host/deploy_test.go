package host

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The probe script picks ~/.cache for other users and the root directory
// for root, and reports size and hash only when the file exists.
func TestProbeScript(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	bin := t.TempDir()
	home := t.TempDir()
	run := func(uid, dir string) probe {
		t.Helper()
		// a fake id(1) reporting uid
		os.WriteFile(filepath.Join(bin, "id"), []byte("#!/bin/sh\necho "+uid+"\n"), 0o755)
		cmd := exec.Command("sh", "-c", probeScript(dir, sum))
		cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "HOME=" + home}
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		p, err := parseProbe(string(out))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := run("1000", "")
	want := filepath.Join(home, UserAgentDir, sum, "migrate")
	if p.OS != "Linux" || p.Machine == "" || p.UID != 1000 || p.Path != want || p.Size != -1 || p.SHA256 != "" {
		t.Fatalf("user: %+v, want path %s", p, want)
	}
	if p := run("0", ""); p.UID != 0 || p.Path != filepath.Join(RootAgentDir, sum, "migrate") {
		t.Fatalf("root: %+v", p)
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, sum), 0o755)
	os.WriteFile(filepath.Join(dir, sum, "migrate"), []byte("hello\n"), 0o755)
	p = run("1000", dir)
	if p.Path != filepath.Join(dir, sum, "migrate") || p.Size != 6 || p.SHA256 != "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03" {
		t.Fatalf("existing: %+v", p)
	}
}

func TestParseProbeErrors(t *testing.T) {
	for _, in := range []string{"", "Linux\nx86_64\n", "Linux\nx86_64\nroot\n/x\n", "Linux\nx86_64\n0\nrel/path\n"} {
		if _, err := parseProbe(in); err == nil {
			t.Errorf("parseProbe(%q) accepted", in)
		}
	}
	// sha256sum missing: size only
	p, err := parseProbe("Linux\nx86_64\n0\n/a/migrate\n42\n\n")
	if err != nil || p.Size != 42 || p.SHA256 != "" {
		t.Fatalf("%+v %v", p, err)
	}
}
