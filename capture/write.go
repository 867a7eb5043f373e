package capture

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/migrate-tool/migrate/internal/hint"
)

// maxAttempts bounds how often an archive is rewritten because a file
// changed or vanished while it was being written.
const maxAttempts = 3

// WriteFile writes the archive for m to path (temp file + rename). A file
// that changed while being archived is re-hashed and the archive written
// again; one that vanished is dropped with a note — at most maxAttempts
// times, then the error names the file.
func WriteFile(ctx context.Context, path string, m *Manifest) error {
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := Create(path, m, OpenFile)
		var se *SourceError
		if err == nil || !errors.As(err, &se) {
			return err
		}
		if attempt == maxAttempts {
			return hint.With(fmt.Errorf("%w (after %d attempts)", err, attempt),
				"the file keeps changing; pause its writer or --exclude it, then capture again")
		}
		if rerr := refresh(m, se); rerr != nil {
			return rerr
		}
	}
}

// refresh updates the entry named by se: re-hash it, or drop it if gone.
func refresh(m *Manifest, se *SourceError) error {
	e := m.Lookup(se.Path)
	if e == nil {
		return se
	}
	switch {
	case errors.Is(se.Err, os.ErrNotExist):
		e.Type = ""
		m.Entries = compact(m.Entries)
		m.Notes = append(m.Notes, "vanished during capture, skipped: "+se.Path)
	case errors.Is(se.Err, ErrChanged):
		if err := hashEntry(e); err != nil {
			return &SourceError{Path: e.Path, Err: err}
		}
		m.Notes = append(m.Notes, "changed during capture, re-read: "+se.Path)
	case errors.Is(se.Err, os.ErrPermission), errors.Is(se.Err, syscall.EACCES):
		return hint.With(se, "run the capture as root on the source host")
	default:
		return se
	}
	return nil
}
