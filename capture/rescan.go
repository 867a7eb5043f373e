package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// treeReasons mark directories whose whole tree was captured: a rescan
// walks them again for files added since.
var treeReasons = []string{"data:", "state", "config", "include"}

func isTreeReason(r string) bool {
	for _, p := range treeReasons {
		if strings.HasPrefix(r, p) {
			return true
		}
	}
	return false
}

// Rescan builds the delta of a service that is no longer running (the
// final sync of a cutover, after the old service stopped) against the
// full capture base: every path of base is looked at again, and every
// directory captured as a whole tree (data, state, configuration) is
// walked again for files added since. What the running service would have
// told (its processes, its traced start-up) is taken from base. Nothing
// of the service's identification is redone, so a process that took its
// port meanwhile (the holding proxy) is never mistaken for it.
func Rescan(ctx context.Context, base *Manifest, opts Options) (*Manifest, error) {
	if base == nil || base.Kind != KindFull {
		return nil, errors.New("rescan needs the full capture it is a delta of")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c := newCollector(opts.Logger, opts.Exclude, opts.WithLogs)
	c.snap = opts.spool
	if opts.Output != "" {
		c.skip[opts.Output] = true
	}
	for _, e := range base.Entries {
		for _, r := range e.Reasons {
			c.mark(e.Path, r)
		}
		if e.Type != TypeDir {
			continue
		}
		for _, r := range e.Reasons {
			if isTreeReason(r) {
				if _, err := os.Lstat(e.Path); err == nil {
					c.addTree(e.Path, r)
				}
				break
			}
		}
	}
	acc := readAccounts()
	pk := openPackages(c)
	c.addParents()
	pk.prefetch(c.sorted())
	es, err := c.entries(ctx, acc, pk.owner)
	if err != nil {
		return nil, err
	}
	cur := *base
	cur.Created = time.Now().UTC()
	cur.Entries = compact(es)
	cur.Notes = append(append([]string(nil), base.Notes...), c.notes...)
	return rebase(Delta(base, &cur))(opts.BaseDigest)
}

// rebase records digest (when set) as the base of the delta d.
func rebase(d *Manifest, err error) func(digest string) (*Manifest, error) {
	return func(digest string) (*Manifest, error) {
		if err == nil && digest != "" {
			d.Base = digest
		}
		return d, err
	}
}

// Apply returns the full manifest that results from applying delta on top
// of base: what a target root holds after shipping both.
func Apply(base, delta *Manifest) (*Manifest, error) {
	if base.Kind != KindFull || delta.Kind != KindDelta {
		return nil, fmt.Errorf("apply: want a full manifest and a delta, got %s and %s", base.Kind, delta.Kind)
	}
	out := *delta
	out.Kind, out.Base, out.Deleted = KindFull, "", nil
	gone := map[string]bool{}
	for _, p := range delta.Deleted {
		gone[p] = true
	}
	changed := map[string]*Entry{}
	for i := range delta.Entries {
		changed[delta.Entries[i].Path] = &delta.Entries[i]
	}
	out.Entries = make([]Entry, 0, len(base.Entries)+len(delta.Entries))
	for _, e := range base.Entries {
		if gone[e.Path] || underAny(e.Path, gone) {
			continue
		}
		if n := changed[e.Path]; n != nil {
			out.Entries = append(out.Entries, *n)
			delete(changed, e.Path)
			continue
		}
		out.Entries = append(out.Entries, e)
	}
	for _, e := range delta.Entries {
		if changed[e.Path] != nil {
			out.Entries = append(out.Entries, e)
		}
	}
	sort.Slice(out.Entries, func(i, j int) bool { return out.Entries[i].Path < out.Entries[j].Path })
	return &out, nil
}

func underAny(p string, dirs map[string]bool) bool {
	for d := path.Dir(p); d != "/" && d != "."; d = path.Dir(d) {
		if dirs[d] {
			return true
		}
	}
	return false
}
