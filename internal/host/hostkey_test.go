package host

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/migrate-tool/migrate/internal/hint"
)

func TestUnknownHostKey(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t)
	opts := srv.opts(t)
	opts.KnownHostsFile = filepath.Join(t.TempDir(), "sub", "dir", "known_hosts")
	fp := ssh.FingerprintSHA256(srv.HostKey.PublicKey())

	_, err := Open(ctx, srv.spec(), opts)
	var uk *UnknownHostKeyError
	if !errors.As(err, &uk) || uk.Fingerprint != fp || !strings.Contains(err.Error(), fp) {
		t.Fatalf("unknown host: got %v, want the fingerprint %s", err, fp)
	}
	if !strings.Contains(hint.Of(err), "--accept-new-host-key") {
		t.Fatalf("hint %q", hint.Of(err))
	}
	if _, err := os.Stat(opts.KnownHostsFile); !os.IsNotExist(err) {
		t.Fatalf("known_hosts written without the flag: %v", err)
	}

	opts.AcceptNewHostKey = true
	h, err := Open(ctx, srv.spec(), opts)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	st, err := os.Stat(opts.KnownHostsFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("known_hosts: %v %v", err, st)
	}
	if dst, _ := os.Stat(filepath.Dir(opts.KnownHostsFile)); dst.Mode().Perm() != 0o700 {
		t.Fatalf("known_hosts dir mode %v", dst.Mode())
	}
	data, _ := os.ReadFile(opts.KnownHostsFile)
	if string(data) != knownhostsLine(srv.Addr, srv.HostKey.PublicKey()) {
		t.Fatalf("recorded %q", data)
	}
	// now known: works without the flag, and the line is not added twice
	opts.AcceptNewHostKey = false
	h, err = Open(ctx, srv.spec(), opts)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	if again, _ := os.ReadFile(opts.KnownHostsFile); !bytes.Equal(again, data) {
		t.Fatalf("known_hosts changed: %q", again)
	}
}

func TestChangedHostKey(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t)
	opts := srv.opts(t)
	oldKey, _ := newKey(t)
	kh := knownHostsFor(t, srv.Addr, oldKey.PublicKey())
	opts.KnownHostsFile = kh
	before, _ := os.ReadFile(kh)
	for _, accept := range []bool{false, true} {
		opts.AcceptNewHostKey = accept
		_, err := Open(ctx, srv.spec(), opts)
		var ce *HostKeyChangedError
		if !errors.As(err, &ce) {
			t.Fatalf("accept=%v: got %v, want HostKeyChangedError", accept, err)
		}
		offered := ssh.FingerprintSHA256(srv.HostKey.PublicKey())
		known := ssh.FingerprintSHA256(oldKey.PublicKey())
		if !strings.Contains(err.Error(), offered) || !strings.Contains(err.Error(), known) || !strings.Contains(err.Error(), kh+":1") {
			t.Fatalf("message lacks a fingerprint or the file: %v", err)
		}
		if hint.Code(err) != ExitHostKeyChanged || !strings.Contains(hint.Of(err), "ssh-keygen -R") {
			t.Fatalf("exit %d hint %q", hint.Code(err), hint.Of(err))
		}
	}
	if after, _ := os.ReadFile(kh); !bytes.Equal(after, before) {
		t.Fatal("known_hosts modified after a changed key")
	}
}

// The handshake asks for the key types known_hosts lists, so a host known
// by its RSA key is not refused for showing its ed25519 key first.
func TestKnownAlgorithms(t *testing.T) {
	edKey, _ := newKey(t)
	srv := startServer(t)
	c, err := newHostKeyChecker([]string{knownHostsFor(t, srv.Addr, edKey.PublicKey())}, false, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.knownAlgorithms(srv.Addr); len(got) != 1 || got[0] != ssh.KeyAlgoED25519 {
		t.Fatalf("algorithms %v", got)
	}
	if got := c.knownAlgorithms("127.0.0.9:22"); got != nil {
		t.Fatalf("unknown host algorithms %v", got)
	}
}

// ssh_config's StrictHostKeyChecking accept-new (or no) trusts a new host
// like --accept-new-host-key, and never a changed key.
func TestStrictHostKeyCheckingFromConfig(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t)
	opts := srv.opts(t)
	dir := t.TempDir()
	opts.KnownHostsFile = filepath.Join(dir, "known_hosts")
	opts.SSHConfigFile = filepath.Join(dir, "config")
	os.WriteFile(opts.SSHConfigFile, []byte("Host *\n  StrictHostKeyChecking no\n"), 0o600)
	h, err := Open(ctx, srv.spec(), opts)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	if data, _ := os.ReadFile(opts.KnownHostsFile); string(data) != knownhostsLine(srv.Addr, srv.HostKey.PublicKey()) {
		t.Fatalf("recorded %q", data)
	}
	other, _ := newKey(t)
	os.WriteFile(opts.KnownHostsFile, []byte(knownhostsLine(srv.Addr, other.PublicKey())), 0o600)
	var ce *HostKeyChangedError
	if _, err := Open(ctx, srv.spec(), opts); !errors.As(err, &ce) {
		t.Fatalf("changed key with StrictHostKeyChecking no: %v", err)
	}
}

// A host known only by a key type it no longer offers is refused with a
// message that says so, not a bare "no common algorithm".
func TestKnownKeyTypeNotOffered(t *testing.T) {
	srv := startServer(t) // offers ed25519 only
	rk, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := ssh.NewPublicKey(&rk.PublicKey)
	opts := srv.opts(t)
	opts.KnownHostsFile = knownHostsFor(t, srv.Addr, pub)
	_, err = Open(testCtx(t), srv.spec(), opts)
	want := "known_hosts has only rsa-sha2-512/rsa-sha2-256/ssh-rsa keys for it and it offers none of them"
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(hint.Of(err), "ssh-keygen -R") {
		t.Fatalf("got %v (hint %q)", err, hint.Of(err))
	}
}

func TestMalformedKnownHosts(t *testing.T) {
	srv := startServer(t)
	opts := srv.opts(t)
	opts.KnownHostsFile = filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(opts.KnownHostsFile, []byte("127.0.0.1 ssh-ed25519 not-base64!\n"), 0o600)
	_, err := Open(testCtx(t), srv.spec(), opts)
	if err == nil || !strings.HasPrefix(err.Error(), "read known_hosts: ") || !strings.Contains(hint.Of(err), "--known-hosts") {
		t.Fatalf("got %v (hint %q)", err, hint.Of(err))
	}
}
