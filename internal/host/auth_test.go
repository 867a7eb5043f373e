package host

import (
	"crypto/ed25519"
	"encoding/pem"
	"github.com/migrate-tool/migrate/internal/testenv"
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/migrate-tool/migrate/internal/hint"
)

// Keys from ssh-agent (SSH_AUTH_SOCK) are offered when no file is named.
func TestAuthWithSSHAgent(t *testing.T) {
	srv := startServer(t)
	data, _ := os.ReadFile(srv.ClientKey)
	raw, err := ssh.ParseRawPrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: raw}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { agent.ServeAgent(keyring, c); c.Close() }()
		}
	}()
	t.Setenv("SSH_AUTH_SOCK", sock)
	t.Setenv("HOME", t.TempDir()) // no default key files
	opts := srv.opts(t)
	opts.IdentityFiles = nil
	h, err := Open(testCtx(t), srv.spec(), opts)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
}

// Without -i, ssh_config or ssh-agent, ~/.ssh/id_ed25519 is used.
func TestAuthWithDefaultKeyFile(t *testing.T) {
	srv := startServer(t)
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("SSH_AUTH_SOCK", "")
	data, _ := os.ReadFile(srv.ClientKey)
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	os.WriteFile(filepath.Join(home, ".ssh", "id_ed25519"), data, 0o600)
	opts := srv.opts(t)
	opts.IdentityFiles = nil
	h, err := Open(testCtx(t), srv.spec(), opts)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	os.Remove(filepath.Join(home, ".ssh", "id_ed25519"))
	if _, err := Open(testCtx(t), srv.spec(), opts); err == nil {
		t.Fatal("connected without any key")
	}
}

// Bracketed IPv6 specs reach [::1]:port and are looked up in known_hosts
// as "[::1]:port".
func TestIPv6Loopback(t *testing.T) {
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		testenv.Skip(t, "no IPv6 loopback")
	} else {
		ln.Close()
	}
	srv := startServerOn(t, "[::1]:0")
	opts := srv.opts(t)
	data, _ := os.ReadFile(opts.KnownHostsFile)
	if _, port, _ := net.SplitHostPort(srv.Addr); string(data[:len("[::1]:"+port)]) != "[::1]:"+port {
		t.Fatalf("known_hosts line %q", data)
	}
	h, err := Open(testCtx(t), "ssh://tester@"+srv.Addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
}

func TestEncryptedIdentity(t *testing.T) {
	srv := startServer(t)
	_, priv, _ := ed25519.GenerateKey(nil)
	blk, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "id_enc")
	os.WriteFile(f, pem.EncodeToMemory(blk), 0o600)
	opts := srv.opts(t)
	opts.IdentityFiles = []string{f}
	_, err = Open(testCtx(t), srv.spec(), opts)
	if err == nil || err.Error() != "identity "+f+" is encrypted" || hint.Of(err) != "load it into ssh-agent with `ssh-add "+f+"` (SSH_AUTH_SOCK is used)" {
		t.Fatalf("got %v (hint %q)", err, hint.Of(err))
	}
}
