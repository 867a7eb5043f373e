package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/migrate-tool/migrate/internal/agent"
)

// MethodRun is the agent method that captures a service on the host the
// agent runs on and streams the archive back.
const MethodRun = "capture.run"

func init() { agent.Register(MethodRun, handleRun) }

// RunParams are the parameters of capture.run.
type RunParams struct {
	Options
	DryRun bool `json:"dry_run,omitempty"`
}

// RunResult is the result of capture.run. Manifest is set for a dry run
// only (otherwise it is the first entry of the streamed archive).
type RunResult struct {
	Kind     string    `json:"kind"`
	Service  string    `json:"service"`
	Host     string    `json:"host"`
	Entries  int       `json:"entries"`
	Files    int       `json:"files"`
	Bytes    int64     `json:"bytes"` // total size of the file bodies
	Deleted  int       `json:"deleted,omitempty"`
	Packages int       `json:"packages"`
	Ports    []Port    `json:"ports,omitempty"`
	Notes    []string  `json:"notes,omitempty"`
	Manifest *Manifest `json:"manifest,omitempty"`
}

// Summarize counts a manifest's entries for a RunResult.
func Summarize(m *Manifest) *RunResult {
	r := &RunResult{Kind: m.Kind, Service: m.Service, Host: m.Host, Entries: len(m.Entries), Deleted: len(m.Deleted),
		Packages: len(m.Packages), Ports: m.Ports, Notes: m.Notes}
	for _, e := range m.Entries {
		if e.Type == TypeFile {
			r.Files++
			r.Bytes += e.Size
		}
	}
	return r
}

func handleRun(ctx context.Context, c *agent.Call) (any, error) {
	var p RunParams
	if err := c.Decode(&p); err != nil {
		return nil, err
	}
	p.Logger = c.Log
	if p.DryRun {
		m, err := Collect(ctx, p.Options)
		if err != nil {
			return nil, err
		}
		r := Summarize(m)
		r.Manifest = m
		return r, nil
	}
	m, err := Run(ctx, p.Options, c.Out)
	if err != nil {
		return nil, err
	}
	return Summarize(m), nil
}

// Caller is the part of host.Host that Fetch needs.
type Caller interface {
	CallStream(ctx context.Context, method string, params any, in io.Reader, out io.Writer, result any) error
}

// Fetch runs capture.run through h and writes the streamed archive to
// path: into a temp file next to it, verified and only then renamed into
// place. A stream from an agent over SSH is decoded as it arrives, every
// body checked against its sha256 in the manifest. A local capture (h is
// this machine, the stream an in-process copy) has instead every frame
// checked as it is compressed (Options.CheckFrames), its bodies coming
// from the capture's spool, hashed as they were read: the same check for
// less than half the work. A dry run writes nothing and returns the
// manifest in the result.
func Fetch(ctx context.Context, h Caller, p RunParams, path string) (*RunResult, error) {
	var res RunResult
	if p.DryRun {
		if err := h.CallStream(ctx, MethodRun, p, nil, io.Discard, &res); err != nil {
			return nil, err
		}
		return &res, nil
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, outputError(fmt.Errorf("create archive %s: %w", path, err))
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	cw := &countWriter{w: tmp}
	var out io.Writer = cw
	var pw *io.PipeWriter
	verified := make(chan error, 1)
	if l, ok := h.(interface{ IsLocal() bool }); ok && l.IsLocal() {
		p.CheckFrames = true
		verified <- nil
	} else {
		// The stream is verified (every checksum) while it is written.
		var pr *io.PipeReader
		pr, pw = io.Pipe()
		go func() {
			err := WalkStream(path, pr, func(*Manifest) error { return nil }, func(*Entry, io.Reader) error { return nil })
			io.Copy(io.Discard, pr) // keep the writer going after a failure
			verified <- err
		}()
		out = io.MultiWriter(cw, pw)
	}
	err = h.CallStream(ctx, MethodRun, p, nil, out, &res)
	if pw != nil {
		pw.Close()
	}
	verr := <-verified
	if err != nil {
		if cw.err != nil {
			return nil, outputError(fmt.Errorf("write archive %s: %w", path, cw.err))
		}
		return nil, err
	}
	if verr != nil {
		return nil, fmt.Errorf("received archive is damaged: %w", verr)
	}
	if err := tmp.Sync(); err != nil {
		return nil, outputError(fmt.Errorf("sync archive %s: %w", path, err))
	}
	if err := tmp.Close(); err != nil {
		return nil, outputError(fmt.Errorf("close archive %s: %w", path, err))
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, outputError(fmt.Errorf("rename archive into place: %w", err))
	}
	ok = true
	return &res, nil
}

// countWriter remembers the first write error, so that a full local disk
// is reported as such rather than as a broken agent stream.
type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

// ReadBase reads the manifest of a previous capture for --since: an
// archive, or a bare manifest.json.
func ReadBase(path string) (*Manifest, error) {
	r, err := OpenArchive(path)
	if err == nil {
		return r.Manifest(), nil
	}
	var pe *ParseError
	if !errors.As(err, &pe) {
		return nil, err
	}
	b, rerr := os.ReadFile(path)
	if rerr != nil {
		return nil, rerr
	}
	m, merr := decodeManifest(b)
	if merr != nil {
		return nil, err
	}
	return m, nil
}
