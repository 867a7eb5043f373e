package cmd

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func runMigrate(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	code = Run(ctx, IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, append([]string{"migrate"}, args...))
	return out.String(), errOut.String(), code
}

// refusedAddr returns a loopback address where nothing listens.
func refusedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestFactsLocal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	stdout, stderr, code := runMigrate(t, "facts", "local")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	for _, want := range []string{"== local ==\n", "Hostname:", "PROTO  ADDRESS", fmt.Sprintf("127.0.0.1  %d  %d", port, os.Getpid())} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}

	stdout, _, code = runMigrate(t, "--json", "facts", "local")
	var rec struct {
		Type, Host, Hostname string
		Sockets              []struct {
			Port int
			PID  int
		}
	}
	if code != 0 || strings.Count(stdout, "\n") != 1 || json.Unmarshal([]byte(stdout), &rec) != nil {
		t.Fatalf("exit %d, json %q", code, stdout)
	}
	found := false
	for _, s := range rec.Sockets {
		found = found || s.Port == port && s.PID == os.Getpid()
	}
	if rec.Type != "facts" || rec.Host != "local" || rec.Hostname == "" || !found {
		t.Fatalf("record %+v", rec)
	}
}

func TestFactsFailures(t *testing.T) {
	dir := t.TempDir()
	common := []string{"--known-hosts", filepath.Join(dir, "kh"), "-F", "none", "-i", filepath.Join(dir, "nokey"), "--connect-timeout", "2s"}
	bad := "root@" + refusedAddr(t)

	// one host that fails: its own error, exit 1
	_, stderr, code := runMigrate(t, append([]string{"facts", bad}, common...)...)
	if code != 1 || !strings.HasPrefix(stderr, "migrate: error: read identity: open ") {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
	// with a usable key file the connection itself fails
	os.WriteFile(filepath.Join(dir, "nokey"), testKeyPEM(t), 0o600)
	_, stderr, code = runMigrate(t, append([]string{"facts", bad}, common...)...)
	if code != 1 || !strings.Contains(stderr, "connection refused (after ") || !strings.Contains(stderr, "migrate: hint: ") {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
	// some fail: partial, exit 3, the good one still printed
	stdout, stderr, code := runMigrate(t, append([]string{"--json", "facts", "local", bad}, common...)...)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if code != 3 || len(lines) != 2 || !strings.Contains(lines[0], `"type":"facts"`) || !strings.Contains(lines[1], `"type":"error"`) {
		t.Fatalf("exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "migrate: error: facts failed on 1 of 2 hosts") || !strings.Contains(stderr, `"exit_code":3`) {
		t.Fatalf("stderr %q", stderr)
	}
	// all fail: exit 1
	_, stderr, code = runMigrate(t, append([]string{"facts", bad, bad}, common...)...)
	if code != 1 || strings.Count(stderr, "connection refused") != 2 || !strings.Contains(stderr, "facts failed on all 2 hosts") {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
	// a bad spec is a usage error and nothing is contacted
	_, stderr, code = runMigrate(t, "facts", "local", "web:0")
	if code != 2 || !strings.HasPrefix(stderr, `migrate: error: host spec "web:0": bad port "0" (want 1-65535)`) {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
}

// testKeyPEM returns a fresh unencrypted private key in OpenSSH format.
func testKeyPEM(t *testing.T) []byte {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(blk)
}
