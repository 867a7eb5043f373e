package transfer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/migrate-tool/migrate/capture"
)

// previousFile keeps the manifest a root held before a different full
// archive is shipped into it, so that commit can delete what the new one
// no longer has. It survives an interrupted transfer.
const previousFile = "previous.json"

// keepPrevious saves the root's current manifest as previous.json before a
// different full manifest replaces it (once: a resumed transfer keeps the
// first one).
func (l Layout) keepPrevious(m *capture.Manifest, digest string) error {
	if m.Kind != capture.KindFull {
		return nil
	}
	if _, err := os.Stat(l.file(previousFile)); err == nil {
		return nil
	}
	old, err := os.ReadFile(l.file(manifestFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read manifest of %s: %w", l.Name, err)
	}
	var om capture.Manifest
	if json.Unmarshal(old, &om) != nil {
		return nil
	}
	if d, _ := om.Digest(); d == digest {
		return nil
	}
	return l.writeState(previousFile, old)
}

// removeStale deletes, for a full manifest replacing another, the paths
// the previous manifest listed that the new one neither lists nor needs as
// a parent directory. Paths are resolved inside the root like entries.
func (t *target) removeStale() error {
	b, err := os.ReadFile(t.l.file(previousFile))
	if errors.Is(err, os.ErrNotExist) || t.pl.M.Kind != capture.KindFull {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read previous manifest of %s: %w", t.l.Name, err)
	}
	var prev capture.Manifest
	if err := json.Unmarshal(b, &prev); err != nil {
		return nil
	}
	keep := make(map[string]bool, 2*len(t.pl.Real))
	for i, real := range t.pl.Real {
		keep[real] = true
		keep[t.pl.M.Entries[i].Path] = true
	}
	var stale []string
	lookup := t.lookup()
	for _, e := range prev.Entries {
		if keep[e.Path] || !capture.CleanPath(e.Path) {
			continue
		}
		real, err := resolve(e.Path, false, lookup)
		if err != nil || keep[real] {
			continue
		}
		stale = append(stale, real)
	}
	// Deepest first; never a directory that still holds a kept path.
	sort.Sort(sort.Reverse(sort.StringSlice(stale)))
	for _, p := range stale {
		if t.holdsKept(p, keep) {
			continue
		}
		if err := t.root.Remove(p); err != nil {
			return err
		}
	}
	return nil
}

func (t *target) holdsKept(dir string, keep map[string]bool) bool {
	for k := range keep {
		if strings.HasPrefix(k, dir+"/") {
			return true
		}
	}
	return false
}
