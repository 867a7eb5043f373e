package capture

import (
	"fmt"
	"sort"
	"time"
)

// Delta returns the delta manifest from base (a full manifest) to cur:
// entries added or changed (type, content, mode, owner, link target or
// device numbers; directory mtimes are ignored) and the paths deleted.
// A changed hardlink brings its source file along so the delta stays
// self-contained.
func Delta(base, cur *Manifest) (*Manifest, error) {
	if base.Kind != KindFull {
		return nil, fmt.Errorf("delta base must be a full capture, not a %s", base.Kind)
	}
	digest, err := base.Digest()
	if err != nil {
		return nil, err
	}
	old := make(map[string]*Entry, len(base.Entries))
	for i := range base.Entries {
		old[base.Entries[i].Path] = &base.Entries[i]
	}
	d := *cur
	d.Kind, d.Base, d.Entries, d.Deleted = KindDelta, digest, nil, nil
	now := make(map[string]bool, len(cur.Entries))
	need := map[string]bool{}
	for i := range cur.Entries {
		e := &cur.Entries[i]
		now[e.Path] = true
		if o := old[e.Path]; o == nil || !sameEntry(o, e) {
			need[e.Path] = true
			if e.Type == TypeHardlink {
				need[e.Link] = true
			}
		}
	}
	for _, e := range cur.Entries {
		if need[e.Path] {
			d.Entries = append(d.Entries, e)
		}
	}
	for _, e := range base.Entries {
		if !now[e.Path] {
			d.Deleted = append(d.Deleted, e.Path)
		}
	}
	sort.Strings(d.Deleted)
	if d.Created.IsZero() {
		d.Created = time.Now().UTC()
	}
	return &d, nil
}

func sameEntry(a, b *Entry) bool {
	if a.Type != b.Type || a.Mode != b.Mode || a.UID != b.UID || a.GID != b.GID || a.Link != b.Link ||
		a.Major != b.Major || a.Minor != b.Minor {
		return false
	}
	if a.Type == TypeFile {
		return a.Size == b.Size && a.SHA256 == b.SHA256
	}
	return true
}
