package transfer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/migrate-tool/migrate/capture"
)

// receiveParams is what transfer.receive gets; the stream follows.
type receiveParams struct {
	Dest string `json:"dest"`
	Name string `json:"name"`
	Need []int  `json:"need"` // the file entries to take from the stream
}

// ReceiveResult lists the entries written and verified.
type ReceiveResult struct {
	Written []int    `json:"written"`
	Bad     []string `json:"bad,omitempty"` // paths whose body did not match
	Error   string   `json:"error,omitempty"`
}

// The stream is a zstd-compressed tar. Files are named "root" + path as in
// a capture archive, so that a whole archive (its manifest.json entry is
// skipped) is a valid stream too. Other entries are ignored.
const streamPrefix = "root"

func receive(ctx context.Context, p receiveParams, in io.Reader, log *slog.Logger) (*ReceiveResult, error) {
	l, err := NewLayout(p.Dest, p.Name)
	if err != nil {
		return nil, err
	}
	m, err := l.Manifest()
	if err != nil {
		return nil, err
	}
	t, err := openTarget(l, m, log)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	want := make(map[string]int, len(p.Need))
	for _, i := range p.Need {
		if i < 0 || i >= len(m.Entries) || m.Entries[i].Type != capture.TypeFile {
			return nil, fmt.Errorf("receive %s: entry %d is not a file of the manifest", p.Name, i)
		}
		want[m.Entries[i].Path] = i
	}
	res := &ReceiveResult{Written: []int{}}
	err = t.readStream(ctx, in, want, res)
	if serr := l.saveJournal(t.journal); err == nil {
		err = serr
	}
	if err != nil && len(res.Written) == 0 {
		return nil, diskHint(err)
	}
	if err != nil {
		// Keep what was written; the caller sends the rest again.
		res.Error = err.Error()
	}
	return res, nil
}

func (t *target) readStream(ctx context.Context, in io.Reader, want map[string]int, res *ReceiveResult) error {
	zr, err := zstd.NewReader(in, zstd.WithDecoderConcurrency(2))
	if err != nil {
		return fmt.Errorf("read stream: %w", err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read stream: %w", err)
		}
		p := strings.TrimSuffix(strings.TrimPrefix(h.Name, streamPrefix), "/")
		i, ok := want[p]
		if !ok || h.Typeflag != tar.TypeReg {
			continue
		}
		e := &t.pl.M.Entries[i]
		err = t.root.WriteFile(t.pl.Real[i], tr, e.Size, e.SHA256, metaOf(e))
		var ce *ChecksumError
		switch {
		case errors.As(err, &ce):
			t.log.Warn("received file does not match its checksum", "path", e.Path, "err", err)
			res.Bad = append(res.Bad, e.Path)
		case err != nil:
			return err
		default:
			t.stampFile(t.pl.Real[i], e.SHA256)
			res.Written = append(res.Written, i)
		}
	}
}

// commitParams is what transfer.commit gets.
type commitParams struct {
	Dest   string `json:"dest"`
	Name   string `json:"name"`
	Digest string `json:"digest"`
}

// CommitResult lists files that failed the final verification; the root
// is complete only when it is empty.
type CommitResult struct {
	Bad      []int `json:"bad,omitempty"`
	Complete bool  `json:"complete"`
}

// commit verifies every file of the root against the manifest, makes the
// links, device nodes and fifos, applies deletions, sets owners, modes
// and times, and only then writes the complete marker.
func commit(ctx context.Context, p commitParams, log *slog.Logger) (*CommitResult, error) {
	l, err := NewLayout(p.Dest, p.Name)
	if err != nil {
		return nil, err
	}
	m, err := l.Manifest()
	if err != nil {
		return nil, err
	}
	if l.Complete() == p.Digest {
		return &CommitResult{Complete: true}, nil
	}
	if d, err := m.Digest(); err != nil || d != p.Digest {
		return nil, fmt.Errorf("commit %s: the target holds manifest %s, not %s; ship again", p.Name, short(d), short(p.Digest))
	}
	t, err := openTarget(l, m, log)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	res := &CommitResult{}
	res.Bad = t.verifyAll(ctx)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(res.Bad) > 0 {
		return res, nil
	}
	for _, d := range t.pl.Dels {
		if err := t.root.Remove(d); err != nil {
			return nil, err
		}
	}
	if err := t.removeStale(); err != nil {
		return nil, err
	}
	if err := t.makeNodes(); err != nil {
		return nil, diskHint(err)
	}
	if err := l.writeState(completeFile, []byte(p.Digest+"\n")); err != nil {
		return nil, diskHint(err)
	}
	if err := l.removeState(pendingFile); err != nil {
		return nil, err
	}
	if err := l.removeState(previousFile); err != nil {
		return nil, err
	}
	if err := l.saveJournal(t.journal); err != nil {
		return nil, diskHint(err)
	}
	res.Complete = true
	return res, nil
}

// verifyAll re-reads every file of the root and returns the entries whose
// content differs from the manifest.
func (t *target) verifyAll(ctx context.Context) []int {
	m := t.pl.M
	var files []int
	for i := range m.Entries {
		if m.Entries[i].Type == capture.TypeFile {
			files = append(files, i)
		}
	}
	states := make([]int, len(m.Entries))
	parallel(files, func(i int) {
		states[i] = stateNeeded
		if ctx.Err() == nil {
			t.check(i, states)
		}
	})
	var bad []int
	for _, i := range files {
		if states[i] != statePresent {
			bad = append(bad, i)
		}
	}
	return bad
}

// makeNodes creates everything but files and sets final metadata, then
// directory times deepest first.
func (t *target) makeNodes() error {
	m := t.pl.M
	for i := range m.Entries {
		e, real := &m.Entries[i], t.pl.Real[i]
		var err error
		switch e.Type {
		case capture.TypeDir:
			err = t.root.Mkdir(real, metaOf(e))
		case capture.TypeFile:
			err = t.root.SetMeta(real, metaOf(e))
		case capture.TypeSymlink:
			err = t.root.Symlink(real, e.Link, metaOf(e))
		case capture.TypeHardlink:
			src, rerr := resolve(e.Link, false, t.lookup())
			if rerr != nil {
				return &EntryError{Path: e.Path, Reason: rerr.Error()}
			}
			err = t.root.Link(real, src)
		case capture.TypeCharDev:
			err = t.root.Mknod(real, 0o020000, e.Major, e.Minor, metaOf(e))
		case capture.TypeFifo:
			err = t.root.Mknod(real, 0o010000, 0, 0, metaOf(e))
		}
		if err != nil {
			return err
		}
	}
	for i := len(m.Entries) - 1; i >= 0; i-- {
		if e := &m.Entries[i]; e.Type == capture.TypeDir {
			if err := t.root.SetDirTime(t.pl.Real[i], e.MTime); err != nil {
				return err
			}
		}
	}
	return nil
}

func (t *target) lookup() linkFunc {
	links := map[string]string{}
	for i := range t.pl.M.Entries {
		if e := &t.pl.M.Entries[i]; e.Type == capture.TypeSymlink {
			links[e.Path] = e.Link
		}
	}
	return func(p string) (string, bool) {
		if l, ok := links[p]; ok {
			return l, true
		}
		return t.root.readlink(p)
	}
}
