package cmd

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/migrate-tool/migrate/internal/agent"
)

// version is set at link time with -ldflags "-X .../cmd.version=v1.2.3";
// otherwise it is taken from the build info.
var version = ""

func init() {
	register(NewCmdVersion)
	agent.Version = buildVersion()
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", ""
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			return "dev-" + rev + dirty
		}
	}
	return "dev"
}

// NewCmdVersion prints the version, the agent protocol version and the platform.
func NewCmdVersion(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print migrate's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := map[string]any{"version": buildVersion(), "agent_protocol": agent.ProtocolVersion, "os": runtime.GOOS, "arch": runtime.GOARCH, "go": runtime.Version()}
			if f.JSON {
				return f.printJSON("version", v)
			}
			_, err := fmt.Fprintf(f.IO.Out, "migrate %s (agent protocol %d, %s/%s, %s)\n", v["version"], v["agent_protocol"], v["os"], v["arch"], v["go"])
			return err
		},
	}
}
