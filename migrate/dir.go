// Package migrate joins the leaf packages into a migration: a directory
// holding the plan, the archives and a journal of the steps done, so that
// every step is idempotent and a command interrupted by a crash or Ctrl-C
// continues where it stopped. It never writes to stdout.
package migrate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/migrate-tool/migrate/internal/hint"
)

// Files inside a migration directory.
const (
	PlanFile    = "plan.json"
	JournalFile = "journal.ndjson"
	LockFile    = ".lock"
	ArchiveDir  = "archives"
)

// ErrNotMigration is returned by Open for a directory without a plan.
var ErrNotMigration = errors.New("not a migration directory")

// Migration is an open migration directory. It holds an exclusive lock on
// the directory until Close, so two commands never act on one migration at
// once.
type Migration struct {
	Dir     string
	Plan    *Plan
	Journal *Journal
	lock    *os.File
}

// Create makes a new migration directory dir for plan p. It refuses a
// directory that already holds a plan.
func Create(dir string, p *Plan) (*Migration, error) {
	if _, err := os.Stat(filepath.Join(dir, PlanFile)); err == nil {
		return nil, hint.With(fmt.Errorf("migration %s already exists", dir),
			"use another --name or --dir, or continue it with `migrate status "+dir+"`")
	}
	if err := os.MkdirAll(filepath.Join(dir, ArchiveDir), 0o700); err != nil {
		return nil, fmt.Errorf("create migration directory: %w", err)
	}
	m, err := lock(dir)
	if err != nil {
		return nil, err
	}
	if err := writeJSONAtomic(filepath.Join(dir, PlanFile), p); err != nil {
		m.Close()
		return nil, err
	}
	m.Plan = p
	if m.Journal, err = openJournal(filepath.Join(dir, JournalFile)); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// Open opens an existing migration directory and replays its journal.
func Open(dir string) (*Migration, error) {
	b, err := os.ReadFile(filepath.Join(dir, PlanFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, hint.With(fmt.Errorf("%s: %w", dir, ErrNotMigration),
			"create one with `migrate plan --from OLD --to NEW --service S --name "+filepath.Base(dir)+"`")
	}
	if err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	var p Plan
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, hint.With(fmt.Errorf("%s: corrupt plan: %w", filepath.Join(dir, PlanFile), err),
			"restore the file from a backup or make a new plan")
	}
	m, err := lock(dir)
	if err != nil {
		return nil, err
	}
	m.Plan = &p
	if m.Journal, err = openJournal(filepath.Join(dir, JournalFile)); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// SavePlan writes the (updated) plan back.
func (m *Migration) SavePlan() error {
	return writeJSONAtomic(filepath.Join(m.Dir, PlanFile), m.Plan)
}

// Path returns the path of name inside the migration directory.
func (m *Migration) Path(name ...string) string {
	return filepath.Join(append([]string{m.Dir}, name...)...)
}

// Close releases the lock and the journal.
func (m *Migration) Close() error {
	var err error
	if m.Journal != nil {
		err = m.Journal.Close()
	}
	if m.lock != nil {
		m.lock.Close()
	}
	return err
}

func lock(dir string) (*Migration, error) {
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock migration: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, hint.With(fmt.Errorf("migration %s is in use by another migrate command", dir),
			"wait for it to finish, or stop it (Ctrl-C); it can be continued later")
	}
	return &Migration{Dir: dir, lock: f}, nil
}

// writeJSONAtomic writes v as indented JSON to path through a temporary
// file and a rename, so a crash never leaves a half-written file.
func writeJSONAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
