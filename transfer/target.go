package transfer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/migrate-tool/migrate/capture"
	"github.com/migrate-tool/migrate/internal/hint"
)

// Entry states reported by prepare.
const (
	statePresent = iota // already in the root, verified
	stateCopied         // copied from the target's own files or another root, verified
	stateNeeded         // must be sent
)

// prepareParams is what transfer.prepare receives.
type prepareParams struct {
	Dest     string            `json:"dest"`
	Name     string            `json:"name"`
	Digest   string            `json:"digest"`
	Manifest *capture.Manifest `json:"manifest"`
	// NoReuse disables copying from the target's / and other roots.
	NoReuse bool `json:"no_reuse,omitempty"`
}

// PrepareResult says what the target holds already.
type PrepareResult struct {
	Complete     bool  `json:"complete"`      // root already complete with this manifest
	Need         []int `json:"need"`          // indices of file entries to send
	NeedBytes    int64 `json:"need_bytes"`    // their total size
	PresentBytes int64 `json:"present_bytes"` // bytes already in the root (resume)
	ReusedBytes  int64 `json:"reused_bytes"`  // bytes copied from the target's own files
	Files        int   `json:"files"`
}

// target is one service's root being shipped, on the target host.
type target struct {
	l       Layout
	root    *Root
	pl      *Plan
	log     *slog.Logger
	journal *journal
}

func openTarget(l Layout, m *capture.Manifest, log *slog.Logger) (*target, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	root, err := OpenRoot(l.Root())
	if err != nil {
		return nil, diskHint(err)
	}
	pl, err := Check(m, root.readlink)
	if err != nil {
		root.Close()
		return nil, hint.With(err, "the archive is damaged or hostile; capture the service again")
	}
	return &target{l: l, root: root, pl: pl, log: log, journal: l.loadJournal()}, nil
}

func (t *target) Close() error { return t.root.Close() }

func (r *Root) readlink(p string) (string, bool) {
	pfd, base, err := r.parent(p, false)
	if err != nil {
		return "", false
	}
	defer unix.Close(pfd)
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(pfd, base, buf)
	if err != nil {
		return "", false
	}
	return string(buf[:n]), true
}

func diskHint(err error) error {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return hint.With(err, "free space on the target or choose another --dest")
	}
	return err
}

func prepare(ctx context.Context, p prepareParams, log *slog.Logger) (*PrepareResult, error) {
	l, err := NewLayout(p.Dest, p.Name)
	if err != nil {
		return nil, err
	}
	m := p.Manifest
	if m == nil {
		return nil, fmt.Errorf("prepare %s: no manifest", p.Name)
	}
	if l.Complete() == p.Digest {
		return &PrepareResult{Complete: true}, nil
	}
	if err := checkBase(l, m, p.Digest); err != nil {
		return nil, err
	}
	if err := l.makeDir(); err != nil {
		return nil, diskHint(err)
	}
	t, err := openTarget(l, m, log)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	mj, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	// From here on the root is not complete.
	if err := l.removeState(completeFile); err != nil {
		return nil, err
	}
	if err := l.writeState(pendingFile, []byte(p.Digest+"\n")); err != nil {
		return nil, diskHint(err)
	}
	if err := l.keepPrevious(m, p.Digest); err != nil {
		return nil, err
	}
	if err := l.writeState(manifestFile, mj); err != nil {
		return nil, diskHint(err)
	}
	if err := t.root.removeTemps(); err != nil {
		return nil, err
	}
	if err := t.makeDirs(); err != nil {
		return nil, diskHint(err)
	}
	res, err := t.sortFiles(ctx, !p.NoReuse)
	if serr := l.saveJournal(t.journal); err == nil && serr != nil {
		return nil, diskHint(serr)
	}
	return res, err
}

// checkBase makes sure a delta applies on top of what the root holds.
func checkBase(l Layout, m *capture.Manifest, digest string) error {
	if m.Kind != capture.KindDelta {
		return nil
	}
	have := l.Complete()
	if have == m.Base {
		return nil
	}
	if b, err := os.ReadFile(l.file(pendingFile)); err == nil && string(b) == digest+"\n" {
		return nil // resuming this delta
	}
	if have == "" {
		return hint.With(fmt.Errorf("delta archive for %s needs a complete root on the target, found none at %s", l.Name, l.Root()),
			"ship the full archive first, then the delta")
	}
	return hint.With(fmt.Errorf("delta archive for %s applies to manifest %s, the root holds %s", l.Name, short(m.Base), short(have)),
		"ship the deltas in order, or the full archive again")
}

func (t *target) makeDirs() error {
	for i := range t.pl.M.Entries {
		e := &t.pl.M.Entries[i]
		if e.Type != capture.TypeDir {
			continue
		}
		if err := t.root.Mkdir(t.pl.Real[i], metaOf(e)); err != nil {
			return err
		}
	}
	return nil
}

func metaOf(e *capture.Entry) Meta {
	return Meta{Mode: e.Mode, UID: e.UID, GID: e.GID, MTime: e.MTime}
}

// sortFiles finds out, for every file entry, whether the root holds it
// already, whether it can be copied from the target's own file at the same
// path or from another root with the same content, or whether it must be
// sent. Several files are hashed at once.
func (t *target) sortFiles(ctx context.Context, reuse bool) (*PrepareResult, error) {
	m := t.pl.M
	var idx *contentIndex
	if reuse {
		idx = loadIndex(t.l)
		defer idx.Close()
	}
	states := make([]int, len(m.Entries))
	var files []int
	for i := range m.Entries {
		if m.Entries[i].Type == capture.TypeFile {
			files = append(files, i)
		}
	}
	// Pass 1: what the root holds already.
	parallel(files, func(i int) { states[i] = stateNeeded; t.check(i, states) })
	res := &PrepareResult{Files: len(files)}
	var missing int64
	for _, i := range files {
		if states[i] == statePresent {
			res.PresentBytes += m.Entries[i].Size
		} else {
			missing += m.Entries[i].Size
		}
	}
	if err := checkSpace(t.l.Root(), missing); err != nil {
		return nil, err
	}
	// Pass 2: copy what the target has elsewhere.
	if reuse {
		var mu sync.Mutex
		var firstErr error
		parallel(files, func(i int) {
			if states[i] != stateNeeded || ctx.Err() != nil {
				return
			}
			ok, err := t.reuse(i, idx)
			mu.Lock()
			defer mu.Unlock()
			if ok {
				states[i] = stateCopied
			} else if err != nil && firstErr == nil {
				firstErr = err
			}
		})
		if firstErr != nil {
			return nil, diskHint(firstErr)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	for _, i := range files {
		switch states[i] {
		case stateCopied:
			res.ReusedBytes += m.Entries[i].Size
		case stateNeeded:
			res.Need = append(res.Need, i)
			res.NeedBytes += m.Entries[i].Size
		}
	}
	return res, nil
}

// parallel runs fn for each index with a few workers.
func parallel(idx []int, fn func(i int)) {
	ch := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ch {
				fn(i)
			}
		}()
	}
	for _, i := range idx {
		ch <- i
	}
	close(ch)
	wg.Wait()
}

// check marks entry i present if the root holds it byte for byte.
func (t *target) check(i int, states []int) {
	e := &t.pl.M.Entries[i]
	f, err := t.root.Open(t.pl.Real[i])
	if err != nil {
		return
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Size != e.Size {
		return
	}
	if t.journal.verified(t.pl.Real[i], e.SHA256, &st) {
		states[i] = statePresent
		return
	}
	if sum, err := hashReader(f); err == nil && sum == e.SHA256 {
		states[i] = statePresent
		t.journal.record(t.pl.Real[i], stampOf(&st, sum))
	}
}

func hashReader(r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// reuse copies entry i from the target's own file at the same path or from
// another root holding the same content. The copy is verified; a source
// that does not match is skipped. Only a write failure is an error.
func (t *target) reuse(i int, idx *contentIndex) (bool, error) {
	e := &t.pl.M.Entries[i]
	try := func(f *os.File) (bool, error) {
		defer f.Close()
		if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() || st.Size() != e.Size {
			return false, nil
		}
		err := t.root.WriteFile(t.pl.Real[i], f, e.Size, e.SHA256, metaOf(e))
		var ce *ChecksumError
		if errors.As(err, &ce) {
			return false, nil
		}
		if err == nil {
			t.stampFile(t.pl.Real[i], e.SHA256)
		}
		return err == nil, err
	}
	if f, err := os.OpenFile(e.Path, os.O_RDONLY|unix.O_NONBLOCK, 0); err == nil {
		if ok, err := try(f); ok || err != nil {
			return ok, err
		}
	}
	for _, f := range idx.open(e.SHA256, t.l.Name) {
		if ok, err := try(f); ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

// checkSpace fails early when the file system of dir cannot hold n more
// bytes (plus 1% and 16 MiB of headroom).
func checkSpace(dir string, n int64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return nil
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	need := n + n/100 + 16<<20
	if n > 0 && free < need {
		return hint.With(fmt.Errorf("not enough space on the target: %s has %d bytes free, the root needs %d more: %w",
			dir, free, need, unix.ENOSPC), "free space on the target or choose another --dest")
	}
	return nil
}

// contentIndex finds files by sha256 in the other roots under the same
// destination, from their manifests.
type contentIndex struct {
	dest  string
	bySum map[string][]located
	roots map[string]*Root
}

type located struct{ name, path string }

func loadIndex(l Layout) *contentIndex {
	idx := &contentIndex{dest: l.Dest, bySum: map[string][]located{}, roots: map[string]*Root{}}
	dirs, _ := os.ReadDir(l.Dest)
	for _, d := range dirs {
		if !d.IsDir() || d.Name() == l.Name {
			continue
		}
		ol := Layout{Dest: l.Dest, Name: d.Name()}
		m, err := ol.Manifest()
		if err != nil {
			continue
		}
		pl, err := Check(m, nil)
		if err != nil {
			continue
		}
		for i := range m.Entries {
			if e := &m.Entries[i]; e.Type == capture.TypeFile {
				idx.bySum[e.SHA256] = append(idx.bySum[e.SHA256], located{d.Name(), pl.Real[i]})
			}
		}
	}
	return idx
}

var indexMu sync.Mutex

func (idx *contentIndex) open(sum, self string) []*os.File {
	if idx == nil {
		return nil
	}
	var out []*os.File
	for _, loc := range idx.bySum[sum] {
		indexMu.Lock()
		r, ok := idx.roots[loc.name]
		if !ok {
			r, _ = openExistingRoot(filepath.Join(idx.dest, loc.name, rootDir))
			idx.roots[loc.name] = r
		}
		indexMu.Unlock()
		if r == nil {
			continue
		}
		if f, err := r.Open(loc.path); err == nil {
			out = append(out, f)
		}
	}
	return out
}

func (idx *contentIndex) Close() {
	if idx == nil {
		return
	}
	for _, r := range idx.roots {
		if r != nil {
			r.Close()
		}
	}
}
