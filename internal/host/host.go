// Package host gives one interface to a machine, local or reached over
// SSH, and runs the migrate agent on it.
//
// An SSH host holds one *ssh.Client for its lifetime: every Exec, agent
// call and the SFTP channel used to deploy the agent share that
// connection, which is kept alive with keepalive@openssh.com requests.
// Host keys are always verified against known_hosts (see hostkey.go); the
// agent is the local migrate binary copied into a content-addressed path
// on the remote host (see deploy.go).
package host

import (
	"context"
	"io"
	"log/slog"
	"time"
)

// Host is one machine on which migrate acts.
type Host interface {
	// String returns the spec as given, e.g. "ssh://root@10.231.0.1".
	String() string
	// IsLocal reports whether the host is this machine ("local").
	IsLocal() bool
	// Call runs one agent request on the host, deploying the agent binary
	// first if needed, and decodes its result into result.
	Call(ctx context.Context, method string, params, result any) error
	// CallStream is Call with a byte stream each way: in is sent to the
	// handler's c.In, and what it writes to c.Out is copied to out.
	CallStream(ctx context.Context, method string, params any, in io.Reader, out io.Writer, result any) error
	// Exec runs argv on the host. Over SSH the words are shell-quoted, so
	// argv is never interpreted by the remote shell. A non-zero exit
	// status is returned as *ExitError.
	Exec(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer) error
	// Close releases the connection. It is safe to call more than once.
	Close() error
}

// Options shape how hosts are reached. The zero value works: defaults are
// ~/.ssh/config, ~/.ssh/known_hosts, ssh-agent and the default key files.
type Options struct {
	// ConnectTimeout bounds dialling plus the SSH handshake and
	// authentication (default 10s).
	ConnectTimeout time.Duration
	// AcceptNewHostKey trusts the key of a host that known_hosts does not
	// list yet and appends it there. A changed key is refused regardless.
	AcceptNewHostKey bool
	// KnownHostsFile is the known_hosts file (default ~/.ssh/known_hosts,
	// or ssh_config's UserKnownHostsFile).
	KnownHostsFile string
	// IdentityFiles are private key files tried before ssh_config's
	// IdentityFile entries and the default ~/.ssh/id_* files.
	IdentityFiles []string
	// SSHConfigFile is the ssh_config file (default ~/.ssh/config, then
	// /etc/ssh/ssh_config). "none" disables it.
	SSHConfigFile string
	// AgentBinary is the migrate binary deployed as the remote agent
	// (default: the running executable).
	AgentBinary string
	// AgentDir overrides the remote directory holding agent binaries
	// (default /var/lib/migrate/agent for root, else
	// ~/.cache/migrate/agent).
	AgentDir string
	// KeepAlive is the interval of keepalive@openssh.com requests
	// (default 15s; negative disables them).
	KeepAlive time.Duration
	// Logger receives debug logs and the remote agent's stderr.
	Logger *slog.Logger
}

// DefaultConnectTimeout is used when Options.ConnectTimeout is zero.
const DefaultConnectTimeout = 10 * time.Second

// DefaultKeepAlive is used when Options.KeepAlive is zero.
const DefaultKeepAlive = 15 * time.Second

func (o Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Open connects to the host named by spec. For "local" nothing is
// connected; for anything else an SSH connection is made and its host
// key verified before Open returns.
func Open(ctx context.Context, spec string, opts Options) (Host, error) {
	s, err := ParseSpec(spec)
	if err != nil {
		return nil, err
	}
	if s.Local {
		return newLocal(opts), nil
	}
	return dialSSH(ctx, s, opts)
}
