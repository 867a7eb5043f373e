package host

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/migrate-tool/migrate/internal/hint"
)

// ExitHostKeyChanged is the exit code of a refused changed host key. It
// is the plain failure code: scripts tell the cases apart by the error
// type (*HostKeyChangedError) or message, not the code.
const ExitHostKeyChanged = hint.ExitFailed

// UnknownHostKeyError means known_hosts has no key for the host and
// --accept-new-host-key was not given.
type UnknownHostKeyError struct {
	Host        string // known_hosts name, e.g. "10.0.0.1" or "[10.0.0.1]:2222"
	KeyType     string
	Fingerprint string // SHA256:...
	File        string // the known_hosts file that would record it
}

func (e *UnknownHostKeyError) Error() string {
	return fmt.Sprintf("host key of %s is unknown: %s %s is not in %s", e.Host, e.KeyType, e.Fingerprint, e.File)
}

// HostKeyChangedError means the host offered a key other than the one
// known_hosts lists for it. It is always refused.
type HostKeyChangedError struct {
	Host        string
	KeyType     string
	Fingerprint string   // offered key
	Known       []string // "TYPE SHA256:... (file:line)" of each known key
}

func (e *HostKeyChangedError) Error() string {
	return fmt.Sprintf("host key of %s has CHANGED: offered %s %s, known_hosts has %s",
		e.Host, e.KeyType, e.Fingerprint, strings.Join(e.Known, ", "))
}

// HostKeyRevokedError means the offered key is marked @revoked.
type HostKeyRevokedError struct {
	Host, KeyType, Fingerprint, Where string
}

func (e *HostKeyRevokedError) Error() string {
	return fmt.Sprintf("host key of %s is revoked: %s %s (%s)", e.Host, e.KeyType, e.Fingerprint, e.Where)
}

// hostKeyChecker verifies host keys against known_hosts files and, when
// allowed, records keys of new hosts in the first file.
type hostKeyChecker struct {
	files  []string // the first one receives new keys
	accept bool
	log    *slog.Logger
	db     ssh.HostKeyCallback // nil when no file exists yet

	mu  sync.Mutex
	err error // the last refusal, kept because ssh wraps it
}

// appendMu serialises appends to known_hosts within this process.
var appendMu sync.Mutex

func newHostKeyChecker(files []string, accept bool, log *slog.Logger) (*hostKeyChecker, error) {
	c := &hostKeyChecker{files: files, accept: accept, log: log}
	var existing []string
	for _, f := range files {
		if _, err := os.Stat(f); err == nil {
			existing = append(existing, f)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("known_hosts: %w", err)
		}
	}
	if len(existing) > 0 {
		db, err := knownhosts.New(existing...)
		if err != nil {
			return nil, hint.With(fmt.Errorf("read known_hosts: %w", err), "fix the malformed line or the file's permissions, or pass another file with --known-hosts")
		}
		c.db = db
	}
	return c, nil
}

// knownAlgorithms returns the host key algorithms known_hosts lists for
// name, so the handshake asks for a key we can verify instead of a
// different type that would look like a changed key. Nil means no
// preference (host unknown).
func (c *hostKeyChecker) knownAlgorithms(name string) []string {
	if c.db == nil {
		return nil
	}
	_, priv, _ := ed25519.GenerateKey(nil)
	probe, _ := ssh.NewSignerFromKey(priv)
	err := c.db(name, fakeAddr(name), probe.PublicKey())
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	for _, k := range ke.Want {
		for _, a := range algorithmsForKeyType(k.Key.Type()) {
			if !seen[a] {
				seen[a] = true
				algos = append(algos, a)
			}
		}
	}
	return algos
}

func algorithmsForKeyType(t string) []string {
	if t == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{t}
}

type fakeAddr string

func (a fakeAddr) Network() string { return "tcp" }
func (a fakeAddr) String() string  { return string(a) }

// callback returns the ssh.HostKeyCallback for one connection. name is
// the "host:port" looked up in known_hosts.
func (c *hostKeyChecker) callback(name string) ssh.HostKeyCallback {
	return func(_ string, remote net.Addr, key ssh.PublicKey) error {
		err := c.check(name, key)
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		return err
	}
}

// refusal returns the host key error of the last handshake, if any.
func (c *hostKeyChecker) refusal() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *hostKeyChecker) check(name string, key ssh.PublicKey) error {
	khName := knownhosts.Normalize(name)
	fp := ssh.FingerprintSHA256(key)
	var err error = &knownhosts.KeyError{}
	if c.db != nil {
		err = c.db(name, fakeAddr(name), key)
	}
	if err == nil {
		c.log.Debug("host key verified", "known_hosts_name", khName, "fingerprint", fp)
		return nil
	}
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case errors.As(err, &re):
		e := &HostKeyRevokedError{Host: khName, KeyType: key.Type(), Fingerprint: fp,
			Where: fmt.Sprintf("%s:%d", re.Revoked.Filename, re.Revoked.Line)}
		return hint.With(e, "the key was revoked in known_hosts; contact the host's administrator")
	case errors.As(err, &ke) && len(ke.Want) > 0:
		e := &HostKeyChangedError{Host: khName, KeyType: key.Type(), Fingerprint: fp}
		for _, k := range ke.Want {
			e.Known = append(e.Known, fmt.Sprintf("%s %s (%s:%d)", k.Key.Type(), ssh.FingerprintSHA256(k.Key), k.Filename, k.Line))
		}
		h := fmt.Sprintf("someone may be intercepting the connection; if the host was reinstalled, remove the old key with `ssh-keygen -R '%s' -f %s` and run again with --accept-new-host-key",
			khName, ke.Want[0].Filename)
		return hint.WithExit(hint.With(e, h), ExitHostKeyChanged)
	case errors.As(err, &ke):
		if c.accept {
			return c.record(khName, key)
		}
		e := &UnknownHostKeyError{Host: khName, KeyType: key.Type(), Fingerprint: fp, File: c.files[0]}
		return hint.With(e, "compare the fingerprint with the host's (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then run again with --accept-new-host-key to trust and record it")
	default:
		return fmt.Errorf("verify host key of %s: %w", khName, err)
	}
}

// record appends key for khName to the first known_hosts file, creating
// it (0600) and its directory (0700) when missing.
func (c *hostKeyChecker) record(khName string, key ssh.PublicKey) error {
	appendMu.Lock()
	defer appendMu.Unlock()
	file := c.files[0]
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("record host key: %w", err)
	}
	f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("record host key: %w", err)
	}
	defer f.Close()
	line := knownhosts.Line([]string{khName}, key) + "\n"
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
			line = "\n" + line
		}
	}
	if _, err := f.WriteString(line); err != nil {
		return fmt.Errorf("record host key: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("record host key: %w", err)
	}
	c.log.Warn("trusted new host key", "known_hosts_name", khName, "type", key.Type(), "fingerprint", ssh.FingerprintSHA256(key), "file", file)
	return nil
}
