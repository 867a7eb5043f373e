package cmd

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/migrate-tool/migrate/migrate"
)

func init() { register(NewCmdHold) }

// NewCmdHold is the hidden daemon that holds a service's address during
// cutover (started by the agent on the old host with the listening socket
// as fd 3; see migrate.Hold).
func NewCmdHold(f *Factory) *cobra.Command {
	var optsFile string
	cmd := &cobra.Command{
		Use:    migrate.HoldCommand,
		Short:  "Hold a taken-over listening socket until released (started by cutover)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := os.ReadFile(optsFile)
			if err != nil {
				return err
			}
			var opts migrate.HoldOptions
			if err := json.Unmarshal(b, &opts); err != nil {
				return fmt.Errorf("%s: %w", optsFile, err)
			}
			opts.ListenFD = 3
			log := slog.New(slog.NewTextHandler(f.IO.ErrOut, nil)).With("hold", opts.Listen)
			return migrate.Hold(cmd.Context(), opts, log)
		},
	}
	cmd.Flags().StringVar(&optsFile, "options", "", "JSON file of migrate.HoldOptions")
	cmd.MarkFlagRequired("options")
	return cmd
}
