package capture

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/migrate-tool/migrate/internal/hint"
)

// accounts maps ids to names from /etc/passwd and /etc/group.
type accounts struct {
	users  map[string]User
	groups map[string]Group
	uname  map[int]string
	gname  map[int]string
}

func readAccounts() *accounts {
	a := &accounts{users: map[string]User{}, groups: map[string]Group{}, uname: map[int]string{}, gname: map[int]string{}}
	if b, err := os.ReadFile("/etc/passwd"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Split(l, ":")
			if len(f) < 7 {
				continue
			}
			uid, _ := strconv.Atoi(f[2])
			gid, _ := strconv.Atoi(f[3])
			a.users[f[0]] = User{Name: f[0], UID: uid, GID: gid, Gecos: f[4], Home: f[5], Shell: f[6]}
			if _, ok := a.uname[uid]; !ok {
				a.uname[uid] = f[0]
			}
		}
	}
	if b, err := os.ReadFile("/etc/group"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Split(l, ":")
			if len(f) < 4 {
				continue
			}
			gid, _ := strconv.Atoi(f[2])
			var members []string
			if f[3] != "" {
				members = strings.Split(f[3], ",")
			}
			a.groups[f[0]] = Group{Name: f[0], GID: gid, Members: members}
			if _, ok := a.gname[gid]; !ok {
				a.gname[gid] = f[0]
			}
		}
	}
	return a
}

// entries turns the collected paths into manifest entries: metadata from
// lstat, hardlinks detected by inode, file bodies hashed in parallel.
// Paths that vanish meanwhile are skipped with a note; unreadable ones
// are an error.
func (c *collector) entries(ctx context.Context, acc *accounts, owner func(string) string) ([]Entry, error) {
	c.addParents()
	paths := c.sorted()
	if c.snap != nil {
		paths = c.snap.pre.arrange(paths)
	}
	out, err := c.stat(paths, acc, owner)
	if err != nil {
		return nil, err
	}
	if c.snap != nil {
		c.snap.pre.keepDirTimes(out)
		return out, c.snapAll(ctx, out)
	}
	return out, c.hashAll(ctx, out)
}

// stat turns paths into entries, in that order, without reading bodies: a
// file's Size is its size at lstat. The first path of a hard-linked inode
// is its file entry.
func (c *collector) stat(paths []string, acc *accounts, owner func(string) string) ([]Entry, error) {
	out := make([]Entry, 0, len(paths))
	type inode struct{ dev, ino uint64 }
	links := map[inode]string{}
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				c.note("vanished during capture, skipped: %s", p)
				continue
			}
			return nil, fmt.Errorf("stat %s: %w", p, err)
		}
		e := Entry{Path: p, MTime: fi.ModTime().UTC().Truncate(time.Second), Reasons: c.items[p].reasons}
		if !fi.IsDir() {
			e.Package = owner(p)
		}
		st := statT(fi)
		if st != nil {
			e.Mode, e.UID, e.GID = st.Mode&0o7777, int(st.Uid), int(st.Gid)
		}
		e.User, e.Group = acc.uname[e.UID], acc.gname[e.GID]
		m := fi.Mode()
		switch {
		case m.IsRegular():
			e.Type, e.Size = TypeFile, fi.Size()
			if st != nil && st.Nlink > 1 {
				k := inode{uint64(st.Dev), st.Ino}
				if src, ok := links[k]; ok {
					e.Type, e.Link, e.Size = TypeHardlink, src, 0
				} else {
					links[k] = p
				}
			}
		case m.IsDir():
			e.Type = TypeDir
		case m&os.ModeSymlink != 0:
			e.Type = TypeSymlink
			if e.Link, err = os.Readlink(p); err != nil {
				continue
			}
		case m&os.ModeCharDevice != 0:
			e.Type = TypeCharDev
		case m&os.ModeDevice != 0:
			e.Type = TypeBlockDev
		case m&os.ModeNamedPipe != 0:
			e.Type = TypeFifo
		default:
			continue // sockets: recreated by the service
		}
		if (e.Type == TypeCharDev || e.Type == TypeBlockDev) && st != nil {
			e.Major, e.Minor = uint32((st.Rdev>>8)&0xfff|(st.Rdev>>32)&^0xfff), uint32(st.Rdev&0xff|(st.Rdev>>12)&^0xff)
		}
		out = append(out, e)
	}
	return c.dropDanglingLinks(out), nil
}

// dropDanglingLinks turns hardlinks whose source was skipped into files.
func (c *collector) dropDanglingLinks(es []Entry) []Entry {
	have := map[string]bool{}
	for i := range es {
		e := &es[i]
		if e.Type == TypeHardlink && !have[e.Link] {
			e.Type, e.Link = TypeFile, ""
			if fi, err := os.Lstat(e.Path); err == nil {
				e.Size = fi.Size()
			}
		}
		if e.Type == TypeFile {
			have[e.Path] = true
		}
	}
	return es
}

// readWorkers is how many files are read at once.
const readWorkers = 4

// eachFile calls fn for every file entry of es, readWorkers at a time, and
// returns fn's error for each entry (nil where it succeeded). w numbers
// the calling goroutine (0 <= w < readWorkers) for per-worker state. Once
// ctx is done no more entries are handed out and ctx's error is returned.
func eachFile(ctx context.Context, es []Entry, fn func(w, i int) error) ([]error, error) {
	errs := make([]error, len(es))
	parallel(ctx, len(es), func(w, i int) {
		if es[i].Type == TypeFile {
			errs[i] = fn(w, i)
		}
	}, readWorkers)
	return errs, ctx.Err()
}

// parallel calls fn(w, i) for i in [0, n), handed out in order, from
// workers goroutines (w numbers the goroutine) and returns when all calls
// have; once ctx is done no more indices are handed out.
func parallel(ctx context.Context, n int, fn func(w, i int), workers int) {
	var wg sync.WaitGroup
	idx := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := range idx {
				fn(w, i)
			}
		}(w)
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		idx <- i
	}
	close(idx)
	wg.Wait()
}

// hashAll computes size and sha256 of every file entry. Vanished files
// are removed from es (in place, keeping order).
func (c *collector) hashAll(ctx context.Context, es []Entry) error {
	errs, err := eachFile(ctx, es, func(_, i int) error { return hashEntry(&es[i]) })
	if err != nil {
		return err
	}
	return c.readErrors(es, errs)
}

// readErrors turns per-file read errors into notes (vanished: the entry
// is removed) or the first fatal error.
func (c *collector) readErrors(es []Entry, errs []error) error {
	for i, err := range errs {
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrNotExist) {
			c.note("vanished during capture, skipped: %s", es[i].Path)
			es[i].Type = "" // removed below
			continue
		}
		if errors.Is(err, os.ErrPermission) {
			return hint.With(fmt.Errorf("read %s: %w", es[i].Path, err), "run the capture as root on the source host")
		}
		return fmt.Errorf("read %s: %w", es[i].Path, err)
	}
	return nil
}

func hashEntry(e *Entry) error {
	f, err := os.Open(e.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	e.Size, e.SHA256 = n, hex.EncodeToString(h.Sum(nil))
	return nil
}

// compact drops entries marked removed (empty Type) and hardlinks whose
// source was removed.
func compact(es []Entry) []Entry {
	out := es[:0]
	have := map[string]bool{}
	for _, e := range es {
		if e.Type == "" || (e.Type == TypeHardlink && !have[e.Link]) {
			continue
		}
		have[e.Path] = true
		out = append(out, e)
	}
	return out
}
