package capture

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"sort"
	"sync/atomic"
)

// Compression during the traced start-up. The trace mostly waits for the
// service to settle, so meanwhile the archive is compressed for what is
// known already: the provisional entries (everything collected before the
// trace, with the fixed files, their ELF closure and parents), in sorted
// order, as segments (runs of whole entries, about a frame each) of
// complete zstd frames kept in the spool. The archive then lists these
// entries first, in the same order, and what the trace added after them
// (see arrange), so the trace's additions never split a segment. Writing
// the archive reuses each segment whose entries are still exactly the
// same, with the same tar headers and the same spooled bodies; the rest is
// compressed then. Frames are independent, so the stream is the same kind
// as a fresh one.

// precompressed is the set of segments compressed ahead of the archive.
type precompressed struct {
	sp     *spool
	order  []string            // the provisional paths, sorted
	dirs   map[string]Entry    // the provisional directory entries
	segs   []*segment          // planned, in order
	first  map[string]*segment // by the path of their first entry
	done   chan struct{}       // the copies and compression have ended
	cancel context.CancelFunc  // ends them early
	cpus   chan struct{}       // frames encoded at once, over all segments
	enc    frameEncoder        // their encoder, one state per CPU
}

// segment is a run of entries to compress as complete frames.
type segment struct {
	es     []Entry
	est    int64             // size of its tar records by the sizes stat gave
	copied []<-chan struct{} // closed as each of its files is copied into the spool (see seal)
	sealed chan struct{}     // closed once the fields below are set
	bad    bool              // a file could not be copied: not compressed ahead
	locs   []spoolLoc
	keys   []string // entryKey of each entry
	tar    int64    // size of its tar records
	f      *os.File // its frames, once ok
	n      int64    // their size
	ok     bool
	skip   atomic.Bool   // no longer needed: not compressed if not started
	done   chan struct{} // closed when compressed, failed or skipped
}

// entryKey identifies what an entry contributes to the tar stream: its
// header and, for a file, where its body is in the spool.
func entryKey(e *Entry, l spoolLoc) string {
	h := header(e)
	return fmt.Sprintf("%s\x00%c\x00%o\x00%d\x00%d\x00%s\x00%s\x00%d\x00%d\x00%s\x00%d\x00%d\x00%d\x00%d\x00%d",
		h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime.UnixNano(), h.Size, h.Linkname,
		h.Devmajor, h.Devminor, l.file, l.off, l.size)
}

// speculate copies the provisional entries' files into the spool (as
// prefetch does) and compresses them in the background, each segment as
// soon as its own files are copied. copied blocks until the copies are
// made and the provisional order is known.
func (s *spool) speculate(ctx context.Context, c *collector, include []string) (copied func()) {
	cl := c.clone()
	ctx, cancel := context.WithCancel(ctx)
	p := &precompressed{sp: s, first: map[string]*segment{}, done: make(chan struct{}), cancel: cancel}
	s.pre = p
	ready := make(chan struct{})
	go func() {
		defer close(p.done)
		es := cl.provisional(include)
		var files []string
		p.dirs = map[string]Entry{}
		for i := range es {
			p.order = append(p.order, es[i].Path)
			switch es[i].Type {
			case TypeFile:
				files = append(files, es[i].Path)
			case TypeDir:
				p.dirs[es[i].Path] = es[i]
			}
		}
		copies := s.prefetchEach(ctx, files)
		byPath := make(map[string]<-chan struct{}, len(files))
		for i, f := range files {
			byPath[f] = copies[i]
		}
		p.plan(es, byPath)
		go func() {
			for _, seg := range p.segs {
				p.seal(seg)
			}
			close(ready) // every file is in a segment: all are copied
		}()
		p.compress(ctx)
	}()
	return func() { <-ready }
}

// clone returns a copy of c to collect into without touching c.
func (c *collector) clone() *collector {
	cl := newCollector(slog.New(slog.DiscardHandler), c.exclude, c.withLogs)
	for p := range c.items {
		cl.items[p] = &item{}
	}
	maps.Copy(cl.dirCache, c.dirCache)
	maps.Copy(cl.runtime, c.runtime)
	maps.Copy(cl.skip, c.skip)
	cl.acc = c.acc
	return cl
}

// provisional completes c as Collect does after the trace and returns its
// entries (bodies not read), sorted.
func (c *collector) provisional(include []string) []Entry {
	c.addFixed(include)
	c.elfClosure()
	c.addParents()
	es, err := c.stat(c.sorted(), c.acc, func(string) string { return "" })
	if err != nil {
		return nil
	}
	return es
}

// arrange puts the sorted paths in archive order: those among the
// provisional paths in that (sorted) order, then the others, sorted. A
// parent still comes before its children: the provisional paths include
// their parents. Without precompression the order is unchanged.
func (p *precompressed) arrange(paths []string) []string {
	if p == nil || len(p.order) == 0 {
		return paths
	}
	now := make(map[string]bool, len(paths))
	for _, q := range paths {
		now[q] = true
	}
	out := make([]string, 0, len(paths))
	early := make(map[string]bool, len(p.order))
	for _, q := range p.order {
		if now[q] {
			out = append(out, q)
			early[q] = true
		}
	}
	for _, q := range paths {
		if !early[q] {
			out = append(out, q)
		}
	}
	return out
}

// keepDirTimes gives each directory of es that was already seen
// provisionally, with the same mode and owner, the mtime it had then: a
// directory's mtime is recorded when the capture first saw it. Busy
// directories (a mail queue, /tmp) change it all the time, which would
// otherwise spoil their compressed segment.
func (p *precompressed) keepDirTimes(es []Entry) {
	if p == nil {
		return
	}
	for i := range es {
		e := &es[i]
		if d, ok := p.dirs[e.Path]; ok && e.Type == TypeDir && d.Mode == e.Mode && d.UID == e.UID && d.GID == e.GID {
			e.MTime = d.MTime
		}
	}
}

// plan cuts es into segments of about a frame each, by the sizes stat
// gave (the copies are still being made); copied has each file's channel
// from prefetchEach.
func (p *precompressed) plan(es []Entry, copied map[string]<-chan struct{}) {
	var total int64
	for i := range es {
		total += recordSize(&es[i])
	}
	size := int64(frameSize(total, runtime.GOMAXPROCS(0)))
	for i := 0; i < len(es); {
		seg := &segment{done: make(chan struct{}), sealed: make(chan struct{})}
		// Whole entries, as many as fit in size and an eighth: a large file
		// that does not fit starts the next segment rather than make this
		// one long (nginx: libcrypto's 4.7 MB after 2.6 MB made a 7.4 MB
		// segment still compressing long after the other).
		for ; i < len(es) && (seg.est == 0 || seg.est+recordSize(&es[i]) <= size+size/8); i++ {
			seg.es = append(seg.es, es[i])
			seg.est += recordSize(&es[i])
			if ch := copied[es[i].Path]; ch != nil {
				seg.copied = append(seg.copied, ch)
			}
		}
		p.segs = append(p.segs, seg)
		p.first[seg.es[0].Path] = seg
	}
}

// seal waits for seg's files to be copied and records where their bodies
// are in the spool, the entries' sizes as copied and their keys. A segment
// with a file that could not be copied is bad: it is compressed with the
// archive instead.
func (p *precompressed) seal(seg *segment) {
	defer close(seg.sealed)
	for _, ch := range seg.copied {
		<-ch
	}
	seg.locs = make([]spoolLoc, len(seg.es))
	for k := range seg.es {
		e := &seg.es[k]
		if e.Type == TypeFile {
			l, ok := p.sp.lookup(e.Path)
			if !ok {
				seg.bad, seg.keys, seg.tar = true, nil, 0
				return
			}
			seg.locs[k], e.Size = l, l.size
		}
		seg.keys = append(seg.keys, entryKey(e, seg.locs[k]))
		seg.tar += recordSize(e)
	}
}

// recordSize is the size of e's tar record without extended headers.
func recordSize(e *Entry) int64 { return 512 + (e.Size+511)&^511 }

// compress compresses the planned segments, one per CPU at a time, the
// largest first (the longest-processing-time rule: the CPUs finish
// together rather than one taking the largest last). Their frames share
// one encoder per CPU.
func (p *precompressed) compress(ctx context.Context) {
	cpus := runtime.GOMAXPROCS(0)
	p.cpus = make(chan struct{}, cpus)
	enc, err := newEncoder(cpus)
	if err != nil {
		return
	}
	p.enc = enc
	defer enc.Close()
	order := make([]int, len(p.segs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return p.segs[order[a]].est > p.segs[order[b]].est })
	handed := make([]bool, len(p.segs))
	parallel(ctx, len(order), func(_, k int) {
		i := order[k]
		seg := p.segs[i]
		handed[i] = true
		defer close(seg.done)
		<-seg.sealed
		if ctx.Err() == nil && !seg.bad && !seg.skip.Load() && p.write(seg) == nil {
			seg.ok = true
		}
	}, cpus)
	for i, seg := range p.segs {
		if !handed[i] {
			close(seg.done)
		}
	}
}

// write compresses one segment, the tar records of its entries (no
// end-of-archive blocks), into a file of its own in the spool.
func (p *precompressed) write(seg *segment) error {
	byPath := make(map[string]spoolLoc, len(seg.es))
	for i := range seg.es {
		byPath[seg.es[i].Path] = seg.locs[i]
	}
	open := func(e *Entry) (io.ReadCloser, error) { return p.sp.openLoc(byPath[e.Path]), nil }
	f, err := os.CreateTemp(p.sp.dir, "frames-")
	if err != nil {
		return err
	}
	seg.f = f // closed by precompressed.close
	cw := &countWriter{w: f}
	// One frame, or frames of up to maxFrame and a quarter for a large file.
	zw := sharedFramesWriter(cw, frameSize(seg.tar, 1), cap(p.cpus), p.enc)
	zw.cpus, zw.check = p.cpus, p.sp.check
	tw := tar.NewWriter(zw)
	for i := range seg.es {
		if err := writeRecord(tw, zw, &seg.es[i], open, false); err != nil {
			zw.Close()
			return err
		}
	}
	if err := zw.Close(); err != nil {
		return err
	}
	seg.n = cw.n
	return nil
}

// claim returns, by index into es (the archive's entries), the segments
// whose entries stand there exactly as planned; the others are skipped.
// It is called once the collection has waited for speculate's copies.
func (p *precompressed) claim(es []Entry) map[int]*segment {
	if p == nil {
		return nil
	}
	use := map[int]*segment{}
	for i := 0; i < len(es); {
		seg := p.first[es[i].Path]
		if seg == nil || !p.same(seg, es[i:]) {
			i++
			continue
		}
		use[i] = seg
		i += len(seg.keys)
	}
	claimed := map[*segment]bool{}
	for _, seg := range use {
		claimed[seg] = true
	}
	for _, seg := range p.segs {
		if !claimed[seg] {
			seg.skip.Store(true)
		}
	}
	return use
}

// same reports whether es begins with exactly seg's entries.
func (p *precompressed) same(seg *segment, es []Entry) bool {
	if seg.bad || len(seg.keys) == 0 || len(seg.keys) > len(es) {
		return false
	}
	for k, key := range seg.keys {
		var l spoolLoc
		if es[k].Type == TypeFile {
			l, _ = p.sp.lookup(es[k].Path)
		}
		if entryKey(&es[k], l) != key {
			return false
		}
	}
	return true
}

// frames waits for seg and returns a reader of its compressed frames, or
// nil if it was not compressed.
func (p *precompressed) frames(seg *segment) io.Reader {
	<-seg.done
	if !seg.ok {
		return nil
	}
	return io.NewSectionReader(seg.f, 0, seg.n)
}

// close stops the copies and compression, waits for them and closes the
// segments' files.
func (p *precompressed) close() {
	p.cancel()
	<-p.done
	for _, seg := range p.segs {
		if seg.f != nil {
			seg.f.Close()
		}
	}
}
