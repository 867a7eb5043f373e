package cmd

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/migrate-tool/migrate/internal/chroot"
)

func init() { register(NewCmdSupervise) }

// NewCmdSupervise is the hidden `migrate supervise SPEC` command: the
// supervisor of a service started by `migrate service start` (and, with
// --init, PID 1 of the service's namespaces). The agent re-executes its own
// binary this way; it is not meant to be run by hand.
func NewCmdSupervise(f *Factory) *cobra.Command {
	var init bool
	cmd := &cobra.Command{
		Use:    chroot.SuperviseArg + " SPEC",
		Short:  "Supervise a service in its chroot (started by migrate service start)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// The exit code is the service's, so it is returned directly.
			if init {
				os.Exit(chroot.Init(args[0]))
			}
			os.Exit(chroot.Supervise(args[0]))
			return nil
		},
	}
	cmd.Flags().BoolVar(&init, "init", false, "run as PID 1 of the service's namespaces")
	return cmd
}
