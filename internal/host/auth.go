package host

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/migrate-tool/migrate/internal/hint"
)

// authMethods collects the public keys to offer, in order: -i files,
// ssh_config IdentityFile entries, ssh-agent keys, then the default
// ~/.ssh/id_* files when nothing else named a file. Encrypted key files
// are skipped (use ssh-agent for those). The returned closer releases the
// ssh-agent connection.
func authMethods(explicit []string, t target, log *slog.Logger) ([]ssh.AuthMethod, []string, func(), error) {
	var signers []ssh.Signer
	var names []string
	closer := func() {}
	for _, f := range explicit {
		s, err := loadKey(f)
		if err != nil {
			return nil, nil, closer, err
		}
		signers = append(signers, s)
		names = append(names, f)
	}
	for _, f := range t.IdentityFiles {
		s, err := loadKey(f)
		if err != nil {
			log.Debug("skipping ssh_config IdentityFile", "file", f, "err", err)
			continue
		}
		signers = append(signers, s)
		names = append(names, f)
	}
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" && !(t.IdentitiesOnly && len(signers) > 0) {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			log.Debug("ssh-agent unreachable", "socket", sock, "err", err)
		} else {
			closer = func() { conn.Close() }
			as, err := agent.NewClient(conn).Signers()
			if err != nil {
				log.Debug("ssh-agent list keys", "err", err)
			}
			for _, s := range as {
				signers = append(signers, s)
				names = append(names, "ssh-agent:"+ssh.FingerprintSHA256(s.PublicKey()))
			}
		}
	}
	if len(explicit) == 0 && len(t.IdentityFiles) == 0 {
		for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
			f := filepath.Join(homeDir(), ".ssh", n)
			s, err := loadKey(f)
			if err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					log.Debug("skipping default key", "file", f, "err", err)
				}
				continue
			}
			signers = append(signers, s)
			names = append(names, f)
		}
	}
	if len(signers) == 0 {
		return nil, nil, closer, nil
	}
	return []ssh.AuthMethod{ssh.PublicKeys(signers...)}, names, closer, nil
}

// loadKey reads an unencrypted private key file.
func loadKey(path string) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read identity: %w", err)
	}
	s, err := ssh.ParsePrivateKey(data)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, hint.With(fmt.Errorf("identity %s is encrypted", path), "load it into ssh-agent with `ssh-add "+path+"` (SSH_AUTH_SOCK is used)")
	}
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", path, err)
	}
	return s, nil
}
