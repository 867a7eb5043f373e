// Command migrate moves a running Linux service from an old server to a
// new one without its users noticing. See README.md.
package main

import (
	"os"

	"github.com/migrate-tool/migrate/cmd"
)

func main() { os.Exit(cmd.Main()) }
