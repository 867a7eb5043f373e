package capture

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/migrate-tool/migrate/internal/hint"
)

// Names inside the tar stream.
const (
	manifestName = "manifest.json"
	rootPrefix   = "root" // captured path /etc/x is stored as root/etc/x
	maxManifest  = 64 << 20
)

var (
	// ErrChecksum marks a body whose sha256 or size differs from its entry.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrTruncated marks an archive that ends before all entries were read.
	ErrTruncated = errors.New("archive truncated")
	// ErrChanged marks a source file that changed while it was archived.
	ErrChanged = errors.New("file changed while being archived")
)

// ParseError reports a corrupt, truncated or malformed archive, naming the
// first bad entry ("" when the damage is before any entry, e.g. in the
// manifest or the zstd frame header).
type ParseError struct {
	Archive string
	Entry   string
	Err     error
}

func (e *ParseError) Error() string {
	if e.Entry == "" {
		return fmt.Sprintf("archive %s: %v", e.Archive, e.Err)
	}
	return fmt.Sprintf("archive %s: entry %s: %v", e.Archive, e.Entry, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// SourceError reports a captured file that could not be archived as its
// entry says: it vanished (errors.Is(err, fs.ErrNotExist)), became
// unreadable, or changed while being read (errors.Is(err, ErrChanged)).
type SourceError struct {
	Path string
	Err  error
}

func (e *SourceError) Error() string { return fmt.Sprintf("archive %s: %v", e.Path, e.Err) }
func (e *SourceError) Unwrap() error { return e.Err }

// Opener returns the body of a file entry.
type Opener func(e *Entry) (io.ReadCloser, error)

// OpenFile is the Opener for entries read from the local file system at
// their own path.
func OpenFile(e *Entry) (io.ReadCloser, error) { return os.Open(e.Path) }

// Create writes the archive for m to path: a temp file in the same
// directory, renamed into place only when complete and synced. File
// entries without SHA256 are hashed first (one extra read); every body is
// checked against its entry's size and sha256 while it is written, and a
// mismatch aborts with a *SourceError wrapping ErrChanged.
func Create(path string, m *Manifest, open Opener) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return outputError(fmt.Errorf("create archive %s: %w", path, err))
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err = Write(bw, m, open); err != nil {
		return outputError(err)
	}
	if err = bw.Flush(); err != nil {
		return outputError(fmt.Errorf("write archive %s: %w", path, err))
	}
	if err = tmp.Sync(); err != nil {
		return outputError(fmt.Errorf("sync archive %s: %w", path, err))
	}
	if err = tmp.Close(); err != nil {
		return outputError(fmt.Errorf("close archive %s: %w", path, err))
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return outputError(fmt.Errorf("rename archive into place: %w", err))
	}
	return nil
}

// outputError adds a hint to errors caused by the output file system.
func outputError(err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return hint.With(err, "free space on the output file system or write the archive elsewhere with -o")
	case errors.Is(err, os.ErrPermission) && !isSourceError(err):
		return hint.With(err, "choose an output path you can write to")
	}
	return err
}

func isSourceError(err error) bool {
	var se *SourceError
	return errors.As(err, &se)
}

// Write streams the archive for m to w (see Create). It does not close w.
func Write(w io.Writer, m *Manifest, open Opener) error {
	return writeArchive(w, m, open, true, nil, nil)
}

// writeArchive is Write; with verify false the bodies open returns are
// trusted to be those m's checksums were computed from (a capture's own
// spool), so only their sizes are checked, not their sha256 again. Runs of
// entries that pre compressed already are copied from it. With check set,
// every frame compressed here is checked (see frameChecker).
func writeArchive(w io.Writer, m *Manifest, open Opener, verify bool, pre *precompressed, check *frameChecker) error {
	if err := hashMissing(m, open); err != nil {
		return err
	}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	mj, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	cpus := runtime.GOMAXPROCS(0)
	zw, err := newFramesWriter(w, frameSize(tarSize(m, len(mj)), cpus), cpus)
	if err != nil {
		return fmt.Errorf("zstd: %w", err)
	}
	zw.check = check
	defer zw.Close() // on an error: waits for the frames being encoded
	tw := tar.NewWriter(zw)
	hdr := &tar.Header{Name: manifestName, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(mj)),
		ModTime: m.Created, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	if _, err := tw.Write(mj); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	if err := writeEntries(tw, zw, m.Entries, open, verify, pre); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	return nil
}

// writeEntries writes the tar records of es, copying the runs that pre
// compressed already.
func writeEntries(tw *tar.Writer, zw *framesWriter, es []Entry, open Opener, verify bool, pre *precompressed) error {
	ready := pre.claim(es)
	for i := 0; i < len(es); {
		if seg := ready[i]; seg != nil {
			if r := pre.frames(seg); r != nil {
				if err := zw.Frames(r); err != nil {
					return fmt.Errorf("write archive: %w", err)
				}
				i += len(seg.keys)
				continue
			}
		}
		if err := writeRecord(tw, zw, &es[i], open, verify); err != nil {
			return err
		}
		i++
	}
	return nil
}

// writeRecord writes e's tar record, padding included, and lets zw end a
// frame after it.
func writeRecord(tw *tar.Writer, zw *framesWriter, e *Entry, open Opener, verify bool) error {
	if err := writeEntry(tw, e, open, verify); err != nil {
		return err
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write archive entry %s: %w", e.Path, err)
	}
	if err := zw.Boundary(); err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	return nil
}

// tarSize estimates the size of the tar stream for m: a header block per
// entry and each body padded to whole blocks.
func tarSize(m *Manifest, manifestLen int) int64 {
	n := int64(3*512 + manifestLen)
	for i := range m.Entries {
		n += recordSize(&m.Entries[i])
	}
	return n
}

// hashMissing fills Size and SHA256 of file entries that have none.
func hashMissing(m *Manifest, open Opener) error {
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type != TypeFile || e.SHA256 != "" {
			continue
		}
		rc, err := open(e)
		if err != nil {
			return &SourceError{Path: e.Path, Err: err}
		}
		h := sha256.New()
		n, err := io.Copy(h, rc)
		rc.Close()
		if err != nil {
			return &SourceError{Path: e.Path, Err: err}
		}
		e.Size, e.SHA256 = n, hex.EncodeToString(h.Sum(nil))
	}
	return nil
}

func tarName(p string) string { return rootPrefix + p }

func header(e *Entry) *tar.Header {
	h := &tar.Header{Name: tarName(e.Path), Mode: int64(e.Mode), Uid: e.UID, Gid: e.GID,
		Uname: e.User, Gname: e.Group, ModTime: e.MTime, Format: tar.FormatPAX}
	switch e.Type {
	case TypeFile:
		h.Typeflag, h.Size = tar.TypeReg, e.Size
	case TypeDir:
		h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
	case TypeSymlink:
		h.Typeflag, h.Linkname = tar.TypeSymlink, e.Link
	case TypeHardlink:
		h.Typeflag, h.Linkname = tar.TypeLink, tarName(e.Link)
	case TypeCharDev:
		h.Typeflag, h.Devmajor, h.Devminor = tar.TypeChar, int64(e.Major), int64(e.Minor)
	case TypeBlockDev:
		h.Typeflag, h.Devmajor, h.Devminor = tar.TypeBlock, int64(e.Major), int64(e.Minor)
	case TypeFifo:
		h.Typeflag = tar.TypeFifo
	}
	if h.ModTime.IsZero() {
		h.ModTime = time.Unix(0, 0)
	}
	return h
}

func writeEntry(tw *tar.Writer, e *Entry, open Opener, verify bool) error {
	if err := tw.WriteHeader(header(e)); err != nil {
		return fmt.Errorf("write archive entry %s: %w", e.Path, err)
	}
	if e.Type != TypeFile {
		return nil
	}
	rc, err := open(e)
	if err != nil {
		return &SourceError{Path: e.Path, Err: err}
	}
	defer rc.Close()
	h := sha256.New()
	var dst io.Writer = tw
	if verify {
		dst = io.MultiWriter(tw, h)
	}
	n, err := io.CopyN(dst, rc, e.Size)
	if err != nil && err != io.EOF {
		if isWriteErr(err) {
			return fmt.Errorf("write archive entry %s: %w", e.Path, err)
		}
		return &SourceError{Path: e.Path, Err: err}
	}
	if n < e.Size {
		return &SourceError{Path: e.Path, Err: fmt.Errorf("%w: shrank from %d to %d bytes", ErrChanged, e.Size, n)}
	}
	var one [1]byte
	if k, _ := rc.Read(one[:]); k > 0 {
		return &SourceError{Path: e.Path, Err: fmt.Errorf("%w: grew beyond %d bytes", ErrChanged, e.Size)}
	}
	if !verify {
		return nil
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != e.SHA256 {
		return &SourceError{Path: e.Path, Err: fmt.Errorf("%w: sha256 %s, manifest says %s", ErrChanged, got[:12], short(e.SHA256))}
	}
	return nil
}

// isWriteErr tells output errors (disk full) from source read errors.
func isWriteErr(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, tar.ErrWriteTooLong) || errors.Is(err, io.ErrClosedPipe)
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// Reader reads an archive file. It holds no open file: each Walk opens
// the archive afresh.
type Reader struct {
	path string
	m    *Manifest
}

// OpenArchive reads and validates the manifest at the start of the archive
// at path. A damaged manifest is a *ParseError.
func OpenArchive(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open archive: %w", err)
	}
	defer f.Close()
	zr, err := newDecoder(f)
	if err != nil {
		return nil, &ParseError{Archive: path, Err: err}
	}
	defer zr.Close()
	m, err := readManifest(tar.NewReader(zr))
	if err != nil {
		return nil, &ParseError{Archive: path, Entry: manifestName, Err: err}
	}
	return &Reader{path: path, m: m}, nil
}

// ReadManifest reads only the manifest from an archive stream.
func ReadManifest(r io.Reader) (*Manifest, error) {
	zr, err := newDecoder(r)
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	return readManifest(tar.NewReader(zr))
}

// newDecoder bounds the decoder's memory so that a hostile frame header
// cannot make it allocate without limit.
func newDecoder(r io.Reader) (*zstd.Decoder, error) {
	return zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(128<<20), zstd.WithDecoderMaxMemory(1<<30))
}

func readManifest(tr *tar.Reader) (*Manifest, error) {
	h, err := tr.Next()
	if err != nil {
		if err == io.EOF {
			err = ErrTruncated
		}
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	if h.Name != manifestName || h.Typeflag != tar.TypeReg {
		return nil, fmt.Errorf("first entry is %q, not %s: not a migrate archive", h.Name, manifestName)
	}
	if h.Size > maxManifest {
		return nil, fmt.Errorf("manifest of %d bytes is too large", h.Size)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	return decodeManifest(b)
}

func decodeManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&m); err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Path returns the archive's file name.
func (r *Reader) Path() string { return r.path }

// Manifest returns the archive's manifest.
func (r *Reader) Manifest() *Manifest { return r.m }

// Walk calls fn for each entry in archive order, with the body of file
// entries (nil for others). Each body is checked against its entry's size
// and sha256 after fn returns (unread bytes are read and hashed); the
// first damaged, unknown, duplicated or missing entry ends the walk with a
// *ParseError. An error from fn ends it too and is returned as is.
func (r *Reader) Walk(fn func(e *Entry, body io.Reader) error) error {
	f, err := os.Open(r.path)
	if err != nil {
		return fmt.Errorf("open archive: %w", err)
	}
	defer f.Close()
	return walk(r.path, f, r.m, fn)
}

// Verify reads the whole archive and checks every entry's checksum.
func (r *Reader) Verify() error {
	return r.Walk(func(*Entry, io.Reader) error { return nil })
}

// WalkStream reads an archive from a stream once: the manifest, passed to
// mfn, then every entry as in Reader.Walk. name labels errors.
func WalkStream(name string, src io.Reader, mfn func(m *Manifest) error, fn func(e *Entry, body io.Reader) error) error {
	zr, err := newDecoder(src)
	if err != nil {
		return &ParseError{Archive: name, Err: err}
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	m, err := readManifest(tr)
	if err != nil {
		return &ParseError{Archive: name, Entry: manifestName, Err: err}
	}
	if err := mfn(m); err != nil {
		return err
	}
	return walkEntries(name, tr, m, fn)
}

func walk(name string, src io.Reader, m *Manifest, fn func(e *Entry, body io.Reader) error) error {
	zr, err := newDecoder(src)
	if err != nil {
		return &ParseError{Archive: name, Err: err}
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	if _, err := readManifest(tr); err != nil {
		return &ParseError{Archive: name, Entry: manifestName, Err: err}
	}
	return walkEntries(name, tr, m, fn)
}

func walkEntries(name string, tr *tar.Reader, m *Manifest, fn func(e *Entry, body io.Reader) error) error {
	index := make(map[string]int, len(m.Entries))
	for i := range m.Entries {
		index[m.Entries[i].Path] = i
	}
	seen := make([]bool, len(m.Entries))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return &ParseError{Archive: name, Entry: nextMissing(m, seen), Err: truncErr(err)}
		}
		p, ok := entryPath(h.Name)
		i, known := index[p]
		if !ok || !known {
			return &ParseError{Archive: name, Entry: h.Name, Err: errors.New("entry not in manifest")}
		}
		if seen[i] {
			return &ParseError{Archive: name, Entry: p, Err: errors.New("entry stored twice")}
		}
		seen[i] = true
		e := &m.Entries[i]
		if err := checkHeader(h, e); err != nil {
			return &ParseError{Archive: name, Entry: p, Err: err}
		}
		if err := walkOne(tr, e, fn); err != nil {
			var pe *ParseError
			if errors.As(err, &pe) {
				pe.Archive, pe.Entry = name, p
			}
			return err
		}
	}
	if p := nextMissing(m, seen); p != "" {
		return &ParseError{Archive: name, Entry: p, Err: fmt.Errorf("%w: entry missing", ErrTruncated)}
	}
	return nil
}

func walkOne(tr *tar.Reader, e *Entry, fn func(e *Entry, body io.Reader) error) error {
	if e.Type != TypeFile {
		return fn(e, nil)
	}
	hr := &hashReader{r: tr, h: sha256.New()}
	if err := fn(e, hr); err != nil {
		if hr.err != nil {
			return &ParseError{Err: truncErr(hr.err)}
		}
		return err
	}
	if _, err := io.Copy(io.Discard, hr); err != nil {
		return &ParseError{Err: truncErr(err)}
	}
	if hr.n != e.Size {
		return &ParseError{Err: fmt.Errorf("%w: %d bytes, manifest says %d", ErrChecksum, hr.n, e.Size)}
	}
	if got := hex.EncodeToString(hr.h.Sum(nil)); got != e.SHA256 {
		return &ParseError{Err: fmt.Errorf("%w: sha256 %s, manifest says %s", ErrChecksum, got[:12], short(e.SHA256))}
	}
	return nil
}

// hashReader hashes what is read through it and remembers read errors so
// that a damaged body is reported as such even if fn wraps the error.
type hashReader struct {
	r   io.Reader
	h   hash.Hash
	n   int64
	err error
}

func (r *hashReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.h.Write(p[:n])
	r.n += int64(n)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

func truncErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %v", ErrTruncated, err)
	}
	return err
}

func nextMissing(m *Manifest, seen []bool) string {
	for i, s := range seen {
		if !s {
			return m.Entries[i].Path
		}
	}
	return ""
}

func entryPath(name string) (string, bool) {
	if !strings.HasPrefix(name, rootPrefix+"/") {
		return "", false
	}
	p := strings.TrimSuffix(strings.TrimPrefix(name, rootPrefix), "/")
	return p, CleanPath(p)
}

func checkHeader(h *tar.Header, e *Entry) error {
	want := header(e)
	if h.Typeflag != want.Typeflag {
		return fmt.Errorf("tar type %q, manifest says %s", h.Typeflag, e.Type)
	}
	if e.Type == TypeFile && h.Size != e.Size {
		return fmt.Errorf("%w: tar size %d, manifest says %d", ErrChecksum, h.Size, e.Size)
	}
	if (e.Type == TypeSymlink || e.Type == TypeHardlink) && h.Linkname != want.Linkname {
		return fmt.Errorf("link target %q, manifest says %q", h.Linkname, want.Linkname)
	}
	return nil
}
