package migrate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/migrate-tool/migrate/internal/hint"
)

// Status is where a migration stands: its plan and the latest state of
// every step in the journal.
type Status struct {
	Dir   string       `json:"dir"`
	Plan  *Plan        `json:"plan"`
	Steps []StepStatus `json:"steps"`
	// Next is the command that continues the migration.
	Next string `json:"next,omitempty"`
}

// ReadStatus reads a migration directory without locking it, so that it
// works while another command (a drain, a cutover) holds the lock. The
// journal is only read, never repaired.
func ReadStatus(dir string) (*Status, error) {
	b, err := os.ReadFile(filepath.Join(dir, PlanFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, hint.With(fmt.Errorf("%s: %w", dir, ErrNotMigration),
			"give the directory `migrate plan` created (--name or --dir)")
	}
	if err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	var p Plan
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, hint.With(fmt.Errorf("%s: corrupt plan: %w", filepath.Join(dir, PlanFile), err),
			"restore the file from a backup or make a new plan")
	}
	jb, err := os.ReadFile(filepath.Join(dir, JournalFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	j := &Journal{}
	lines := bytes.Split(jb, []byte("\n"))
	for i, line := range lines {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			if i == len(lines)-1 {
				break // torn last line, being written
			}
			return nil, fmt.Errorf("journal %s line %d: %w", filepath.Join(dir, JournalFile), i+1, err)
		}
		j.entries = append(j.entries, e)
	}
	st := &Status{Dir: dir, Plan: &p, Steps: j.Status()}
	st.Next = nextCommand(dir, st.Steps)
	return st, nil
}

// nextCommand names the command that moves the migration on.
func nextCommand(dir string, steps []StepStatus) string {
	state := map[string]string{}
	for _, s := range steps {
		state[s.Step] = s.State
	}
	switch {
	case state[StepRollback] == StepDone:
		return ""
	case state[StepDrain] == StepDone:
		return ""
	case state[StepDNS] == StepDone || state[StepRelease] == StepDone:
		return "migrate drain " + dir + " --watch"
	case state[StepTakeover] != "" || state[StepPreflight] != "":
		return "migrate cutover " + dir
	case state[StepTransfer] == StepDone:
		return "migrate cutover " + dir
	case state[StepCapture] == StepDone:
		return "migrate transfer " + dir
	}
	return "migrate capture " + dir
}
