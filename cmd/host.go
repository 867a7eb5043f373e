package cmd

import (
	"context"
	"os"

	"github.com/migrate-tool/migrate/internal/host"
)

// agentBinaryEnv names a migrate binary to deploy as the remote agent
// instead of the running one (e.g. one built for another architecture).
const agentBinaryEnv = "MIGRATE_AGENT_BINARY"

// HostOptions turns the global SSH flags into host.Options.
func (f *Factory) HostOptions() host.Options {
	return host.Options{
		ConnectTimeout:   f.SSH.ConnectTimeout,
		AcceptNewHostKey: f.SSH.AcceptNewHostKey,
		KnownHostsFile:   f.SSH.KnownHosts,
		IdentityFiles:    f.SSH.Identity,
		SSHConfigFile:    f.SSH.SSHConfig,
		AgentBinary:      os.Getenv(agentBinaryEnv),
		Logger:           f.Logger,
	}
}

// OpenHost connects to the host named by spec ("local", "user@host",
// "ssh://user@host:port", ...) with the global SSH flags.
func (f *Factory) OpenHost(ctx context.Context, spec string) (host.Host, error) {
	return host.Open(ctx, spec, f.HostOptions())
}
