package capture

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
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
	return Delta(base, &cur)
}
