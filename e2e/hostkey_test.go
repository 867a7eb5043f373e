//go:build e2e

package e2e

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/migrate-tool/migrate/internal/testbed"
)

// TestChangedHostKeyRefused: known_hosts lists another key for new's
// address. migrate refuses, with or without --accept-new-host-key, shows
// both fingerprints and leaves known_hosts alone.
func TestChangedHostKeyRefused(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t, testbed.Options{})
	dir := t.TempDir()
	other, err := testbed.GenerateKey(filepath.Join(dir, "other_key"), "impostor")
	if err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(dir, "known_hosts")
	content := testbed.KnownHostsLine(bed.Old.Addr, bed.Old.HostKey) + testbed.KnownHostsLine(bed.New.Addr, other)
	if err := os.WriteFile(kh, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	offered, known := ssh.FingerprintSHA256(bed.New.HostKey), ssh.FingerprintSHA256(other)
	for _, extra := range [][]string{nil, {"--accept-new-host-key"}} {
		args := append(append([]string{"--known-hosts", kh}, extra...), "facts", bed.New.SSHSpec())
		stdout, stderr, code := bed.Migrate(t, args...)
		if code == 0 || code == 2 {
			t.Errorf("%v: exit %d, want a refusal", extra, code)
		}
		if !strings.Contains(stderr, offered) || !strings.Contains(stderr, known) {
			t.Errorf("%v: stderr lacks the offered %s or the known %s:\n%s", extra, offered, known, stderr)
		}
		if !strings.HasPrefix(stderr, "migrate: error: ") {
			t.Errorf("%v: stderr does not start with `migrate: error:`:\n%s", extra, stderr)
		}
		if stdout != "" {
			t.Errorf("%v: stdout after a refusal: %q", extra, stdout)
		}
		if b, _ := os.ReadFile(kh); string(b) != content {
			t.Errorf("%v: known_hosts changed after a refusal:\n%s", extra, b)
		}
	}
	// No agent was deployed on the host whose key was refused.
	if _, err := bed.New.Stat("/var/lib/migrate/agent"); err == nil {
		t.Error("an agent was deployed to a host with a changed key")
	}
}

// TestUnknownHostKey: a host missing from known_hosts is refused with its
// fingerprint and a hint; --accept-new-host-key trusts it, records it, and
// the next run verifies against the recorded key.
func TestUnknownHostKey(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t, testbed.Options{})
	kh := filepath.Join(t.TempDir(), "known_hosts")
	only := testbed.KnownHostsLine(bed.Old.Addr, bed.Old.HostKey)
	if err := os.WriteFile(kh, []byte(only), 0o644); err != nil {
		t.Fatal(err)
	}
	fp := ssh.FingerprintSHA256(bed.New.HostKey)

	_, stderr, code := bed.Migrate(t, "--known-hosts", kh, "facts", bed.New.SSHSpec())
	if code == 0 || code == 2 {
		t.Errorf("unknown key: exit %d, want a refusal", code)
	}
	if !strings.Contains(stderr, fp) || !strings.Contains(stderr, "migrate: hint: ") {
		t.Errorf("unknown key: stderr lacks the fingerprint %s or a hint:\n%s", fp, stderr)
	}
	if b, _ := os.ReadFile(kh); string(b) != only {
		t.Errorf("known_hosts changed without --accept-new-host-key:\n%s", b)
	}

	_, stderr, code = bed.Migrate(t, "--known-hosts", kh, "--accept-new-host-key", "facts", bed.New.SSHSpec())
	if code != 0 {
		t.Fatalf("--accept-new-host-key: exit %d\n%s", code, stderr)
	}
	recorded := recordedKeys(t, kh, bed.New.Addr)
	if len(recorded) != 1 || !equalKeys(recorded[0], bed.New.HostKey) {
		t.Fatalf("known_hosts after --accept-new-host-key has %d keys for %s, want new's key", len(recorded), bed.New.Addr)
	}
	if got := recordedKeys(t, kh, bed.Old.Addr); len(got) != 1 || !equalKeys(got[0], bed.Old.HostKey) {
		t.Errorf("old's entry was disturbed")
	}

	// Now known: verified without the flag.
	_, stderr, code = bed.Migrate(t, "--known-hosts", kh, "facts", bed.New.SSHSpec())
	if code != 0 {
		t.Errorf("after recording: exit %d\n%s", code, stderr)
	}
}

// recordedKeys returns the keys known_hosts file kh lists for addr (port 22).
func recordedKeys(t *testing.T, kh, addr string) []ssh.PublicKey {
	t.Helper()
	b, err := os.ReadFile(kh)
	if err != nil {
		t.Fatal(err)
	}
	var found []ssh.PublicKey
	rest := b
	for len(rest) > 0 {
		_, hosts, key, _, next, err := ssh.ParseKnownHosts(rest)
		if err != nil {
			break
		}
		rest = next
		for _, h := range hosts {
			if h == addr || h == "["+addr+"]:22" || strings.HasPrefix(h, "|1|") && hashedMatch(h, addr) {
				found = append(found, key)
			}
		}
	}
	return found
}

func equalKeys(a, b ssh.PublicKey) bool {
	return string(a.Marshal()) == string(b.Marshal())
}

// hashedMatch reports whether a hashed known_hosts name ("|1|salt|hash")
// stands for addr.
func hashedMatch(entry, addr string) bool {
	parts := strings.Split(entry, "|")
	if len(parts) != 4 {
		return false
	}
	salt, err1 := base64.StdEncoding.DecodeString(parts[2])
	want, err2 := base64.StdEncoding.DecodeString(parts[3])
	if err1 != nil || err2 != nil {
		return false
	}
	mac := hmac.New(sha1.New, salt)
	mac.Write([]byte(addr))
	return hmac.Equal(mac.Sum(nil), want)
}
