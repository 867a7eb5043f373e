package cmd

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

func init() { register(NewCmdGenDocs) }

// docsDate is the date printed in the man pages: fixed, so that the
// committed pages only change when a command does.
var docsDate = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)

// NewCmdGenDocs is the hidden `migrate gen-docs`: one Markdown page and one
// man page per command, generated from the command tree. CI checks that
// docs/cli and docs/man are current (TestGeneratedDocsCurrent).
func NewCmdGenDocs(f *Factory) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:    "gen-docs",
		Short:  "Write docs/cli (Markdown) and docs/man (man pages) from the command tree",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return genDocs(cmd.Root(), dir)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "docs", "directory holding cli/ and man/")
	return cmd
}

func genDocs(root *cobra.Command, dir string) error {
	root.DisableAutoGenTag = true
	root.InitDefaultCompletionCmd()
	md, man := filepath.Join(dir, "cli"), filepath.Join(dir, "man")
	for _, d := range []string{md, man} {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := doc.GenMarkdownTree(root, md); err != nil {
		return fmt.Errorf("markdown pages: %w", err)
	}
	hdr := &doc.GenManHeader{Title: "MIGRATE", Section: "1", Source: "migrate", Manual: "migrate manual", Date: &docsDate}
	if err := doc.GenManTree(root, hdr, man); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	return nil
}
