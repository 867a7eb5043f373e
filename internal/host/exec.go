package host

import (
	"fmt"
	"strings"
)

// ExitError is a command that ran on a host and failed.
type ExitError struct {
	Argv   []string
	Status int    // exit status, -1 when killed by a signal
	Signal string // the signal, if any
}

func (e *ExitError) Error() string {
	name := "command"
	if len(e.Argv) > 0 {
		name = e.Argv[0]
	}
	if e.Signal != "" {
		return fmt.Sprintf("%s killed by signal %s", name, e.Signal)
	}
	return fmt.Sprintf("%s exited with status %d", name, e.Status)
}

// ShellQuote joins argv into one POSIX shell command line in which every
// word is taken literally.
func ShellQuote(argv []string) string {
	var b strings.Builder
	for i, w := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(quoteWord(w))
	}
	return b.String()
}

func quoteWord(w string) string {
	if w == "" {
		return "''"
	}
	safe := true
	for _, r := range w {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r)) {
			safe = false
			break
		}
	}
	if safe {
		return w
	}
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
}
