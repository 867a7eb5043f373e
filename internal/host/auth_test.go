package host

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
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
		t.Skip("no IPv6 loopback")
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
