package transfer

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Root is a directory that files are written into without ever following a
// symlink inside it: every path is resolved by the kernel with
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS relative to an open descriptor of
// the root, and every file is written under a temporary name and renamed.
type Root struct {
	path string
	fd   int
}

// resolveFlags is how every path below the root is resolved.
const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// OpenRoot opens dir (creating it, mode 0755, if missing) as a Root.
func OpenRoot(dir string) (*Root, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create root %s: %w", dir, err)
	}
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open root %s: %w", dir, err)
	}
	return &Root{path: dir, fd: fd}, nil
}

// openExistingRoot opens dir as a Root without creating it.
func openExistingRoot(dir string) (*Root, error) {
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open root %s: %w", dir, err)
	}
	return &Root{path: dir, fd: fd}, nil
}

// Path returns the root's path on the host.
func (r *Root) Path() string { return r.path }

// Close releases the root's descriptor.
func (r *Root) Close() error {
	if r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}

// rel turns an absolute path inside the root ("/usr/sbin/nginx") into the
// relative form the kernel resolves beneath the root.
func rel(p string) string {
	p = strings.TrimLeft(p, "/")
	if p == "" {
		return "."
	}
	return p
}

func (r *Root) openat(p string, flags int, mode uint32) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC | unix.O_NOFOLLOW), Mode: uint64(mode), Resolve: resolveFlags}
	for {
		fd, err := unix.Openat2(r.fd, rel(p), &how)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		return fd, err
	}
}

// dir opens the directory p (absolute inside the root), creating missing
// components with mode 0755 when create is set.
func (r *Root) dir(p string, create bool) (int, error) {
	fd, err := r.openat(p, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err == nil || !create || !errors.Is(err, unix.ENOENT) {
		if err != nil {
			return -1, fmt.Errorf("open directory %s: %w", p, pathErr(err))
		}
		return fd, nil
	}
	parent, base := path.Split(strings.TrimRight(p, "/"))
	if base == "" {
		return -1, fmt.Errorf("open directory %s: %w", p, err)
	}
	pfd, err := r.dir(parent, true)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	if err := unix.Mkdirat(pfd, base, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, fmt.Errorf("mkdir %s: %w", p, err)
	}
	fd, err = r.openat(p, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		return -1, fmt.Errorf("open directory %s: %w", p, pathErr(err))
	}
	return fd, nil
}

// pathErr explains the errors RESOLVE_* flags produce.
func pathErr(err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("path goes through a symlink inside the root: %w", err)
	case errors.Is(err, unix.EXDEV):
		return fmt.Errorf("path leaves the root: %w", err)
	}
	return err
}

// parent opens the directory holding p and returns it with p's last element.
func (r *Root) parent(p string, create bool) (int, string, error) {
	dir, base := path.Split(p)
	if base == "" || base == "." || base == ".." {
		return -1, "", fmt.Errorf("bad path %q", p)
	}
	fd, err := r.dir(dir, create)
	return fd, base, err
}

func tmpName(base string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	if len(base) > 200 {
		base = base[:200]
	}
	return ".migrate-tmp-" + hex.EncodeToString(b[:]) + "-" + base
}

// Meta is the ownership, permission bits and modification time of a path.
type Meta struct {
	Mode  uint32
	UID   int
	GID   int
	MTime time.Time
}

func applyFD(fd int, m Meta) error {
	if err := unix.Fchown(fd, m.UID, m.GID); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if err := unix.Fchmod(fd, m.Mode&0o7777); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if !m.MTime.IsZero() {
		ts := []unix.Timespec{unix.NsecToTimespec(m.MTime.UnixNano()), unix.NsecToTimespec(m.MTime.UnixNano())}
		if err := unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH); err != nil {
			return fmt.Errorf("set mtime: %w", err)
		}
	}
	return nil
}

// ChecksumError reports a file whose content does not match the manifest.
type ChecksumError struct {
	Path      string
	Want, Got string
	Size      int64
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("%s: sha256 %s, manifest says %s", e.Path, short(e.Got), short(e.Want))
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// WriteFile writes body to p under a temporary name, checks that it has
// exactly size bytes hashing to sum, applies m and renames it into place.
// On any failure nothing is left behind.
func (r *Root) WriteFile(p string, body io.Reader, size int64, sum string, m Meta) (err error) {
	pfd, base, err := r.parent(p, true)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	tmp := tmpName(base)
	fd, err := unix.Openat(pfd, tmp, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	defer func() {
		f.Close()
		if err != nil {
			_ = unix.Unlinkat(pfd, tmp, 0)
		}
	}()
	h := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(f, h), io.LimitReader(body, size+1), make([]byte, min(size+1, 1<<20)))
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if n != size || got != sum {
		if n != size {
			got = fmt.Sprintf("(%d bytes, want %d)", n, size)
		}
		return &ChecksumError{Path: p, Want: sum, Got: got, Size: size}
	}
	if err := applyFD(int(f.Fd()), m); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if err := unix.Renameat(pfd, tmp, pfd, base); err != nil {
		return fmt.Errorf("rename %s: %w", p, err)
	}
	return nil
}

// Open opens the regular file p for reading, never through a symlink.
func (r *Root) Open(p string) (*os.File, error) {
	fd, err := r.openat(p, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p, pathErr(err))
	}
	f := os.NewFile(uintptr(fd), p)
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("open %s: not a regular file", p)
	}
	return f, nil
}

// Lstat returns information about p without following a final symlink.
func (r *Root) Lstat(p string) (unix.Stat_t, error) {
	var st unix.Stat_t
	pfd, base, err := r.parent(p, false)
	if err != nil {
		return st, err
	}
	defer unix.Close(pfd)
	err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	return st, err
}

// Mkdir makes directory p (and missing parents). An existing non-directory
// at p is replaced; an existing directory is kept. m is applied except
// the mtime, which SetDirTime sets once the directory's content is final.
func (r *Root) Mkdir(p string, m Meta) error {
	pfd, base, err := r.parent(p, true)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Unlinkat(pfd, base, 0); err != nil {
			return fmt.Errorf("replace %s with a directory: %w", p, err)
		}
	}
	if err := unix.Mkdirat(pfd, base, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("mkdir %s: %w", p, err)
	}
	fd, err := unix.Openat(pfd, base, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", p, err)
	}
	defer unix.Close(fd)
	m.MTime = time.Time{}
	if err := applyFD(fd, m); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}

// SetDirTime sets directory p's mtime.
func (r *Root) SetDirTime(p string, t time.Time) error {
	fd, err := r.openat(p, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", p, pathErr(err))
	}
	defer unix.Close(fd)
	return applyTime(fd, "", t, unix.AT_EMPTY_PATH)
}

func applyTime(dirfd int, name string, t time.Time, flags int) error {
	if t.IsZero() {
		return nil
	}
	ts := []unix.Timespec{unix.NsecToTimespec(t.UnixNano()), unix.NsecToTimespec(t.UnixNano())}
	return unix.UtimesNanoAt(dirfd, name, ts, flags)
}

// place creates a node under a temporary name with mk, sets its owner (and
// mode, unless it is a symlink) and mtime, and renames it over p.
func (r *Root) place(p string, m Meta, symlink bool, mk func(pfd int, tmp string) error) error {
	pfd, base, err := r.parent(p, true)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	tmp := tmpName(base)
	if err := mk(pfd, tmp); err != nil {
		return fmt.Errorf("create %s: %w", p, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = unix.Unlinkat(pfd, tmp, 0)
		}
	}()
	if err := unix.Fchownat(pfd, tmp, m.UID, m.GID, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown %s: %w", p, err)
	}
	if !symlink {
		if err := unix.Fchmodat(pfd, tmp, m.Mode&0o7777, 0); err != nil {
			return fmt.Errorf("chmod %s: %w", p, err)
		}
	}
	if err := applyTime(pfd, tmp, m.MTime, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set mtime %s: %w", p, err)
	}
	if err := unix.Renameat(pfd, tmp, pfd, base); err != nil {
		return fmt.Errorf("rename %s: %w", p, err)
	}
	ok = true
	return nil
}

// Symlink makes p a symlink to target (never resolved here).
func (r *Root) Symlink(p, target string, m Meta) error {
	return r.place(p, m, true, func(pfd int, tmp string) error { return unix.Symlinkat(target, pfd, tmp) })
}

// Mknod makes p a character device, block device or fifo; mode holds the
// S_IFMT type bits.
func (r *Root) Mknod(p string, mode uint32, major, minor uint32, m Meta) error {
	return r.place(p, m, false, func(pfd int, tmp string) error {
		return unix.Mknodat(pfd, tmp, mode|0o600, int(unix.Mkdev(major, minor)))
	})
}

// Link makes p a hard link to the regular file src inside the root.
func (r *Root) Link(p, src string) error {
	spfd, sbase, err := r.parent(src, false)
	if err != nil {
		return err
	}
	defer unix.Close(spfd)
	var st unix.Stat_t
	if err := unix.Fstatat(spfd, sbase, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("hardlink source %s: %w", src, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("hardlink source %s is not a regular file", src)
	}
	pfd, base, err := r.parent(p, true)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	tmp := tmpName(base)
	if err := unix.Linkat(spfd, sbase, pfd, tmp, 0); err != nil {
		return fmt.Errorf("link %s: %w", p, err)
	}
	if err := unix.Renameat(pfd, tmp, pfd, base); err != nil {
		_ = unix.Unlinkat(pfd, tmp, 0)
		return fmt.Errorf("rename %s: %w", p, err)
	}
	return nil
}

// Remove deletes p; a directory is deleted with everything below it.
// Symlinks are removed, never followed.
func (r *Root) Remove(p string) error {
	pfd, base, err := r.parent(p, false)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	return removeAt(pfd, base)
}

func removeAt(pfd int, name string) error {
	err := unix.Unlinkat(pfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	fd, err := unix.Openat(pfd, name, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	d := os.NewFile(uintptr(fd), name)
	names, err := d.Readdirnames(-1)
	if err != nil {
		d.Close()
		return fmt.Errorf("remove %s: %w", name, err)
	}
	for _, n := range names {
		if err := removeAt(fd, n); err != nil {
			d.Close()
			return err
		}
	}
	d.Close()
	if err := unix.Unlinkat(pfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}

// SetMeta applies m to the regular file or directory p.
func (r *Root) SetMeta(p string, m Meta) error {
	fd, err := r.openat(p, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", p, pathErr(err))
	}
	defer unix.Close(fd)
	if err := applyFD(fd, m); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}

// removeTemps deletes temporary files left in the root by an interrupted
// run (a killed agent cannot clean up after itself).
func (r *Root) removeTemps() error {
	return removeTempsAt(r.fd, 0)
}

func removeTempsAt(dirfd int, depth int) error {
	if depth > 64 {
		return nil
	}
	fd, err := unix.Openat(dirfd, ".", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("scan root: %w", err)
	}
	d := os.NewFile(uintptr(fd), ".")
	defer d.Close()
	ents, err := d.ReadDir(-1)
	if err != nil {
		return fmt.Errorf("scan root: %w", err)
	}
	for _, e := range ents {
		switch {
		case strings.HasPrefix(e.Name(), ".migrate-tmp-"):
			if err := removeAt(fd, e.Name()); err != nil {
				return err
			}
		case e.Type().IsDir():
			sub, err := unix.Openat(fd, e.Name(), unix.O_DIRECTORY|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				continue
			}
			err = removeTempsAt(sub, depth+1)
			unix.Close(sub)
			if err != nil {
				return err
			}
		}
	}
	return nil
}
