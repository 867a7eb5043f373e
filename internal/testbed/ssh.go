package testbed

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

const sshdPath = "/usr/sbin/sshd"

// GenerateKey writes a new ed25519 key pair (OpenSSH private key format,
// mode 0600, and path+".pub") and returns the public key.
func GenerateKey(path, comment string) (ssh.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	spub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(spub))) + " " + comment + "\n"
	if err := os.WriteFile(path+".pub", []byte(line), 0o644); err != nil {
		return nil, err
	}
	return spub, nil
}

// KnownHostsLine is the known_hosts line for key at addr (port 22).
func KnownHostsLine(addr string, key ssh.PublicKey) string {
	return addr + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))) + "\n"
}

// sshdConfig is the config of every sshd on the bed (see TESTBED.md).
// StrictModes is off because the keys live under /tmp (mode 1777).
const sshdConfig = `ListenAddress %s:22
HostKey %s
PidFile /run/sshd.pid
AuthorizedKeysFile %s
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
LogLevel VERBOSE
Subsystem sftp internal-sftp
`

// setupSSH makes the client key, host keys and configs, starts sshd on
// the hosts that get one and waits for their banners.
func (b *Bed) setupSSH() error {
	b.ClientKey = filepath.Join(b.Dir, "id_ed25519")
	b.KnownHosts = filepath.Join(b.Dir, "known_hosts")
	if err := os.MkdirAll(filepath.Join(b.Dir, "home"), 0o700); err != nil {
		return err
	}
	clientPub, err := GenerateKey(b.ClientKey, "migrate-testbed-client")
	if err != nil {
		return err
	}
	var known strings.Builder
	var nodes []*Node
	for _, n := range b.Nodes() {
		if !n.ssh {
			continue
		}
		nodes = append(nodes, n)
		key := filepath.Join(n.Dir, "ssh_host_ed25519_key")
		if n.HostKey, err = GenerateKey(key, "root@"+n.Hostname); err != nil {
			return err
		}
		known.WriteString(KnownHostsLine(n.Addr, n.HostKey))
		auth := filepath.Join(n.Dir, "authorized_keys")
		if err := os.WriteFile(auth, ssh.MarshalAuthorizedKey(clientPub), 0o600); err != nil {
			return err
		}
		conf := fmt.Sprintf(sshdConfig, n.Addr, key, auth)
		if err := os.WriteFile(filepath.Join(n.Dir, "sshd_config"), []byte(conf), 0o600); err != nil {
			return err
		}
	}
	if err := os.WriteFile(b.KnownHosts, []byte(known.String()), 0o644); err != nil {
		return err
	}
	if err := b.writeSSHConfig(nodes); err != nil {
		return err
	}
	for _, n := range nodes {
		p, err := n.start("sshd", sshdPath, "-D", "-e", "-f", filepath.Join(n.Dir, "sshd_config"))
		if err != nil {
			return err
		}
		n.sshd = p
	}
	return parallel(nodes, func(n *Node) error {
		return n.WaitBanner(n.Addr+":22", "SSH-2.0-", 10*time.Second, n.sshd)
	})
}

// WaitBanner polls addr (from the root namespace) until a connection
// succeeds and the server's first line starts with prefix ("" accepts any
// connection). If p is not nil and exits first, its log is in the error.
func (n *Node) WaitBanner(addr, prefix string, timeout time.Duration, p *Proc) error {
	return poll(timeout, p, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		if prefix == "" {
			return nil
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if !strings.HasPrefix(line, prefix) {
			return fmt.Errorf("%s: banner %q, want %q (%v)", addr, line, prefix, err)
		}
		return nil
	})
}

// poll calls fn every few milliseconds until it succeeds, timeout passes
// or p (if not nil) exits.
func poll(timeout time.Duration, p *Proc, fn func() error) error {
	deadline := time.Now().Add(timeout)
	delay := 2 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if p != nil {
			if ok, werr := p.Exited(); ok {
				return fmt.Errorf("%s exited (%v) before it was ready: %s", p.Name, werr, p.tail(20))
			}
		}
		if time.Now().After(deadline) {
			if p != nil {
				return fmt.Errorf("not ready after %v: %w; %s log: %s", timeout, err, p.Name, p.tail(20))
			}
			return fmt.Errorf("not ready after %v: %w", timeout, err)
		}
		time.Sleep(delay)
		delay = min(delay*2, 100*time.Millisecond)
	}
}

// writeSSHConfig writes an ssh_config naming each sshd host by its short
// name ("old", "new"), for tests of ssh_config handling (-F).
func (b *Bed) writeSSHConfig(nodes []*Node) error {
	b.SSHConfig = filepath.Join(b.Dir, "ssh_config")
	var sb strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&sb, "Host %s\n\tHostName %s\n\tUser root\n\tPort 22\n\tIdentityFile %s\n\tUserKnownHostsFile %s\n\n",
			n.Name, n.Addr, b.ClientKey, b.KnownHosts)
	}
	return os.WriteFile(b.SSHConfig, []byte(sb.String()), 0o644)
}
