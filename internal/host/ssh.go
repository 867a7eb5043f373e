package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// sshHost is a host reached over one SSH connection.
type sshHost struct {
	spec   Spec
	opts   Options
	log    *slog.Logger
	target target
	client *ssh.Client
	jumps  []*ssh.Client

	stop      chan struct{}
	slots     chan struct{} // bounds concurrent sessions below sshd's MaxSessions
	closeOnce sync.Once

	sftpMu sync.Mutex
	sftp   *sftp.Client

	deployMu    sync.Mutex
	agentPath   string // set once the agent is in place
	uploads     int
	uploadBytes int64
}

// SSH is implemented by hosts reached over SSH; tests and diagnostics use
// it to see what the connection did.
type SSH interface {
	Host
	// Client is the connection shared by every session.
	Client() *ssh.Client
	// AgentPath is the remote path of the deployed agent ("" before the
	// first Call).
	AgentPath() string
	// AgentUploads returns how many times the agent binary was uploaded by
	// this host value, and how many bytes were sent.
	AgentUploads() (count int, bytes int64)
	// SFTP returns the host's SFTP client, opened on first use over the
	// shared connection. Close closes it; callers must not.
	SFTP() (*sftp.Client, error)
}

func (h *sshHost) String() string      { return h.spec.Raw }
func (h *sshHost) IsLocal() bool       { return false }
func (h *sshHost) Client() *ssh.Client { return h.client }
func (h *sshHost) AgentPath() string {
	h.deployMu.Lock()
	defer h.deployMu.Unlock()
	return h.agentPath
}
func (h *sshHost) AgentUploads() (int, int64) {
	h.deployMu.Lock()
	defer h.deployMu.Unlock()
	return h.uploads, h.uploadBytes
}

// Close closes the SFTP channel, the connection and any jump hosts.
func (h *sshHost) Close() error {
	var err error
	h.closeOnce.Do(func() {
		close(h.stop)
		h.sftpMu.Lock()
		if h.sftp != nil {
			h.sftp.Close()
		}
		h.sftpMu.Unlock()
		if h.client != nil {
			err = h.client.Close()
		}
		for i := len(h.jumps) - 1; i >= 0; i-- {
			h.jumps[i].Close()
		}
	})
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return err
}

// keepAliveTimeout is the least time a keepalive may take to be answered
// before it counts as missed: behind a bulk upload a reply can take far
// longer than a short interval.
const keepAliveTimeout = 10 * time.Second

// keepAlive sends a keepalive@openssh.com request every interval and
// closes the connection when three in a row go unanswered.
func (h *sshHost) keepAlive() {
	every := h.opts.KeepAlive
	if every == 0 {
		every = DefaultKeepAlive
	}
	if every < 0 {
		return
	}
	timeout := max(every, keepAliveTimeout)
	t := time.NewTicker(every)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		done := make(chan error, 1)
		go func() {
			_, _, err := h.client.SendRequest("keepalive@openssh.com", true, nil)
			done <- err
		}()
		select {
		case <-h.stop:
			return
		case err := <-done:
			if err != nil {
				h.log.Debug("keepalive failed", "err", err)
				h.client.Close()
				return
			}
			missed = 0
		case <-time.After(timeout):
			missed++
			if missed >= 3 {
				h.log.Warn("connection lost: no answer to keepalives", "host", h.spec.Raw)
				h.client.Close()
				return
			}
		}
	}
}

// maxSessions is how many exec and agent sessions run at once on one
// connection: OpenSSH allows 10 channels (MaxSessions), one is kept for
// SFTP.
const maxSessions = 8

// session opens a session on the shared connection, waiting for a free
// slot. release must be called once the session is closed.
func (h *sshHost) session(ctx context.Context) (s *ssh.Session, release func(), err error) {
	select {
	case h.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	release = func() { <-h.slots }
	s, err = h.client.NewSession()
	if err != nil {
		release()
		return nil, nil, fmt.Errorf("ssh %s: open session: %w", h.spec.Raw, err)
	}
	return s, release, nil
}

// Exec runs argv, shell-quoted, on the host.
func (h *sshHost) Exec(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(argv) == 0 {
		return errors.New("exec: empty command")
	}
	return h.run(ctx, ShellQuote(argv), argv, stdin, stdout, stderr)
}

// run runs a shell command line; argv is only for error messages.
func (h *sshHost) run(ctx context.Context, cmdline string, argv []string, stdin io.Reader, stdout, stderr io.Writer) error {
	s, release, err := h.session(ctx)
	if err != nil {
		return err
	}
	defer release()
	defer s.Close()
	s.Stdin, s.Stdout, s.Stderr = stdin, stdout, stderr
	if err := s.Start(cmdline); err != nil {
		return fmt.Errorf("ssh %s: start %s: %w", h.spec.Raw, argv[0], err)
	}
	return waitSession(ctx, s, argv)
}

// waitSession waits for s, killing it when ctx ends first.
func waitSession(ctx context.Context, s *ssh.Session, argv []string) error {
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err := <-done:
		return sessionError(err, argv)
	case <-ctx.Done():
		s.Signal(ssh.SIGKILL)
		s.Close()
		<-done
		return ctx.Err()
	}
}

func sessionError(err error, argv []string) error {
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return &ExitError{Argv: argv, Status: ee.ExitStatus(), Signal: ee.Signal()}
	}
	var me *ssh.ExitMissingError
	if errors.As(err, &me) {
		return &ExitError{Argv: argv, Status: -1, Signal: "unknown (no exit status)"}
	}
	return err
}

// SFTP returns the host's SFTP client.
func (h *sshHost) SFTP() (*sftp.Client, error) { return h.sftpClient() }

// sftpClient returns the host's SFTP client, opening it on first use.
func (h *sshHost) sftpClient() (*sftp.Client, error) {
	h.sftpMu.Lock()
	defer h.sftpMu.Unlock()
	if h.sftp != nil {
		return h.sftp, nil
	}
	c, err := sftp.NewClient(h.client, sftp.UseConcurrentWrites(true))
	if err != nil {
		return nil, fmt.Errorf("ssh %s: open sftp: %w", h.spec.Raw, err)
	}
	h.sftp = c
	return c, nil
}
