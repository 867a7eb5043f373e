package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/migrate-tool/migrate/internal/hint"
)

// kexPreference puts curve25519 first: the post-quantum hybrids cost far
// more CPU per handshake (sntrup761 ≈0.9s on a small VM).
var kexPreference = []string{
	ssh.KeyExchangeCurve25519,
	"curve25519-sha256@libssh.org",
	ssh.KeyExchangeMLKEM768X25519,
	ssh.KeyExchangeECDHP256,
	ssh.KeyExchangeECDHP384,
	ssh.KeyExchangeECDHP521,
	ssh.KeyExchangeDH14SHA256,
	ssh.KeyExchangeDH16SHA512,
	ssh.KeyExchangeDHGEXSHA256,
}

// dialSSH connects to s and returns the host. ConnectTimeout covers the
// whole of it: every hop's dial, handshake and authentication.
func dialSSH(ctx context.Context, s Spec, opts Options) (*sshHost, error) {
	log := opts.logger().With("host", s.Raw)
	cfg, err := loadSSHConfig(opts.SSHConfigFile)
	if err != nil {
		return nil, hint.With(err, "fix the file or pass another with -F (\"-F none\" ignores ssh_config)")
	}
	t, err := cfg.resolve(s)
	if err != nil {
		return nil, err
	}
	timeout := opts.ConnectTimeout
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	h := &sshHost{spec: s, opts: opts, log: log, target: t, stop: make(chan struct{}), slots: make(chan struct{}, maxSessions)}
	var prev *ssh.Client
	for _, j := range t.ProxyJump {
		js, err := ParseSpec(j)
		if err != nil || js.Local {
			h.Close()
			return nil, fmt.Errorf("ssh config: bad ProxyJump %q for %s", j, s.Host)
		}
		jt, err := cfg.resolve(js)
		if err != nil {
			h.Close()
			return nil, err
		}
		c, err := connect(ctx, prev, jt, opts, timeout, log.With("jump", j))
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("via jump host %s: %w", j, err)
		}
		h.jumps = append(h.jumps, c)
		prev = c
	}
	c, err := connect(ctx, prev, t, opts, timeout, log)
	if err != nil {
		h.Close()
		return nil, err
	}
	h.client = c
	go h.keepAlive()
	return h, nil
}

// connect dials t (through via when not nil) and completes the SSH
// handshake before ctx ends.
func connect(ctx context.Context, via *ssh.Client, t target, opts Options, timeout time.Duration, log *slog.Logger) (*ssh.Client, error) {
	addr := net.JoinHostPort(t.HostName, strconv.Itoa(t.Port))
	khFiles := knownHostsFiles(opts, t)
	checker, err := newHostKeyChecker(khFiles, opts.AcceptNewHostKey || t.AcceptNew, log)
	if err != nil {
		return nil, err
	}
	khName := addr
	if t.HostKeyAlias != "" {
		khName = net.JoinHostPort(t.HostKeyAlias, strconv.Itoa(t.Port))
	}
	auth, keyNames, closeAgent, err := authMethods(opts.IdentityFiles, t, log)
	if err != nil {
		return nil, err
	}
	defer closeAgent()
	config := &ssh.ClientConfig{
		Config:            ssh.Config{KeyExchanges: kexPreference},
		User:              t.User,
		Auth:              auth,
		HostKeyCallback:   checker.callback(khName),
		HostKeyAlgorithms: checker.knownAlgorithms(khName),
		ClientVersion:     "SSH-2.0-migrate",
	}
	start := time.Now()
	log.Debug("connecting", "addr", addr, "user", t.User, "keys", keyNames, "known_hosts", khFiles)
	var conn net.Conn
	if via != nil {
		conn, err = via.DialContext(ctx, "tcp", addr)
	} else {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, dialError(addr, err, time.Since(start), timeout)
	}
	if len(auth) == 0 {
		conn.Close()
		return nil, hint.With(fmt.Errorf("ssh %s: no private key to offer", addr),
			"pass a key with -i FILE, start ssh-agent with a key (SSH_AUTH_SOCK), or set IdentityFile in ~/.ssh/config")
	}
	// The handshake has no context: bound it by the deadline and close
	// the connection if ctx is cancelled first.
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	cc, chans, reqs, err := ssh.NewClientConn(conn, khName, config)
	stopped := stop()
	if err != nil {
		conn.Close()
		if r := checker.refusal(); r != nil {
			return nil, r
		}
		if strings.Contains(err.Error(), "no common algorithm for host key") && len(config.HostKeyAlgorithms) > 0 {
			return nil, hint.WithExit(hint.With(fmt.Errorf("host key of %s: known_hosts has only %s keys for it and it offers none of them",
				knownhosts.Normalize(khName), strings.Join(config.HostKeyAlgorithms, "/")),
				"if the host was reinstalled, remove the old key with `ssh-keygen -R` and run again with --accept-new-host-key"), ExitHostKeyChanged)
		}
		return nil, handshakeError(ctx, addr, t.User, keyNames, err, time.Since(start), stopped)
	}
	if !stopped {
		cc.Close()
		return nil, handshakeError(ctx, addr, t.User, keyNames, ctx.Err(), time.Since(start), false)
	}
	conn.SetDeadline(time.Time{})
	log.Debug("connected", "addr", addr, "took", time.Since(start).Round(time.Millisecond), "server", string(cc.ServerVersion()))
	return ssh.NewClient(cc, chans, reqs), nil
}

// knownHostsFiles returns the files to verify against; new keys go to the
// first one.
func knownHostsFiles(opts Options, t target) []string {
	if opts.KnownHostsFile != "" {
		return []string{opts.KnownHostsFile}
	}
	if len(t.KnownHosts) > 0 {
		return t.KnownHosts
	}
	files := []string{filepath.Join(homeDir(), ".ssh", "known_hosts")}
	if _, err := os.Stat("/etc/ssh/ssh_known_hosts"); err == nil {
		files = append(files, "/etc/ssh/ssh_known_hosts")
	}
	return files
}

func dialError(addr string, err error, took, timeout time.Duration) error {
	var reason string
	switch {
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		reason = "timed out"
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("connect %s: %w", addr, context.Canceled)
	default:
		reason = syscallReason(err)
	}
	return hint.With(fmt.Errorf("connect %s: %s (after %s)", addr, reason, roundTook(took)),
		fmt.Sprintf("check that the host is up and sshd listens on %s; --connect-timeout is %s", addr, timeout))
}

func handshakeError(ctx context.Context, addr, user string, keys []string, err error, took time.Duration, ctxOK bool) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("connect %s: %w", addr, context.Canceled)
	}
	if !ctxOK || errors.Is(ctx.Err(), context.DeadlineExceeded) || isTimeout(err) {
		return hint.With(fmt.Errorf("connect %s: ssh handshake timed out (after %s)", addr, roundTook(took)),
			"the port answers but does not complete an SSH handshake; check that it is sshd, or raise --connect-timeout")
	}
	if strings.Contains(err.Error(), "unable to authenticate") {
		return hint.With(fmt.Errorf("ssh %s: authentication failed for user %q (offered %d key(s))", addr, user, len(keys)),
			"pass the right key with -i FILE or add it to ssh-agent (SSH_AUTH_SOCK), and check the user name and authorized_keys on the host")
	}
	msg := strings.TrimPrefix(err.Error(), "ssh: handshake failed: ")
	return hint.With(fmt.Errorf("connect %s: ssh handshake: %s", addr, msg), "check that the port is an SSH server")
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// syscallReason reduces "dial tcp 1.2.3.4:22: connect: connection refused"
// to "connection refused".
func syscallReason(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		msg := oe.Err.Error()
		if i := strings.LastIndex(msg, ": "); i >= 0 {
			msg = msg[i+2:]
		}
		return msg
	}
	return err.Error()
}

func roundTook(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Microsecond)
}
