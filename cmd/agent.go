package cmd

import (
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/migrate-tool/migrate/internal/agent"
)

func init() { register(NewCmdAgent) }

// NewCmdAgent is the hidden `migrate agent` command: the side of the agent
// protocol that runs on a host, serving requests on stdin/stdout and
// logging to stderr. The orchestrator starts it over SSH.
func NewCmdAgent(f *Factory) *cobra.Command {
	var listMethods bool
	cmd := &cobra.Command{
		Use:    "agent",
		Short:  "Serve the agent protocol on stdin/stdout (started by migrate on a remote host)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if listMethods {
				for _, m := range agent.Methods() {
					cmd.Println(m)
				}
				return nil
			}
			level := slog.LevelInfo
			if f.Verbose {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(f.IO.ErrOut, &slog.HandlerOptions{Level: level})).With("agent", agent.Version)
			return agent.Serve(cmd.Context(), f.IO.In, f.IO.Out, agent.Handlers(), log)
		},
	}
	cmd.Flags().BoolVar(&listMethods, "methods", false, "list the methods this agent serves and exit")
	return cmd
}
