package testbed

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// fillMode says what a private tmpfs starts with.
type fillMode int

const (
	fillEmpty    fillMode = iota // nothing
	fillSkeleton                 // the real directory's subdirectories and symlinks
	fillCopy                     // a copy of the real directory's contents
	fillHome                     // Debian's stock dotfiles for root
)

// privateDir is a directory that gets a private tmpfs in every host.
type privateDir struct {
	path string
	fill fillMode
}

// defaultPrivate are private in every host. Data directories start empty;
// /run and /var/log get the skeleton Debian's daemons expect; the mail
// spools are copied so postfix on two beds (or on old and new) never
// shares a queue, lock or mailbox; /root gets stock dotfiles so the
// machine's own (pyenv hooks, aliases, keys) never reach a host.
var defaultPrivate = []privateDir{
	{"/run", fillSkeleton},
	{"/srv", fillEmpty},
	{"/var/lib/migrate", fillEmpty},
	{"/var/log", fillSkeleton},
	{"/var/mail", fillSkeleton},
	{"/var/spool/postfix", fillCopy},
	{"/var/lib/postfix", fillCopy},
	{"/root", fillHome},
}

// optionalPrivate are made private only when they exist on the machine
// (the init would otherwise create them on the shared root file system).
var optionalPrivate = map[string]bool{"/var/mail": true, "/var/spool/postfix": true, "/var/lib/postfix": true}

// privateDirs is the list for a bed with opts.
func privateDirs(opts Options) ([]privateDir, error) {
	var dirs []privateDir
	seen := map[string]bool{}
	add := func(d privateDir) error {
		if !filepath.IsAbs(d.path) || filepath.Clean(d.path) != d.path || d.path == "/" {
			return fmt.Errorf("private directory %q must be a clean absolute path below /", d.path)
		}
		if seen[d.path] {
			return nil
		}
		if _, err := os.Stat(d.path); err != nil && optionalPrivate[d.path] {
			return nil
		}
		seen[d.path] = true
		dirs = append(dirs, d)
		return nil
	}
	for _, d := range defaultPrivate {
		if err := add(d); err != nil {
			return nil, err
		}
	}
	for _, p := range opts.PrivateDirs {
		if err := add(privateDir{p, fillSkeleton}); err != nil {
			return nil, err
		}
	}
	for _, p := range opts.CopyDirs {
		if err := add(privateDir{p, fillCopy}); err != nil {
			return nil, err
		}
	}
	return dirs, nil
}

// extraDirs are created in the private tmpfs even when the real system
// lacks them (sshd's privilege separation directory is compiled in).
var extraDirs = map[string]os.FileMode{"/run/sshd": 0o755, "/run/lock": 0o777 | os.ModeSticky}

// skipSkeleton are not recreated: other beds' state and per-user mounts.
var skipSkeleton = map[string]bool{"/run/netns": true, LockDir: true, "/run/user": true}

// maxCopy bounds what a fillCopy directory may hold.
const maxCopy = 64 << 20

// fillPrivate fills the host's fresh tmpfs at d.path.
func (n *Node) fillPrivate(d privateDir) error {
	switch d.fill {
	case fillSkeleton, fillCopy:
		budget := int64(maxCopy)
		if err := n.copyTree(d.path, d.fill == fillCopy, &budget); err != nil {
			return err
		}
	case fillHome:
		if err := os.Chmod(n.Path(d.path), 0o700); err != nil {
			return err
		}
		for _, f := range [][2]string{{"/usr/share/base-files/dot.bashrc", ".bashrc"}, {"/usr/share/base-files/dot.profile", ".profile"}} {
			b, err := os.ReadFile(f[0])
			if err != nil {
				continue
			}
			if err := os.WriteFile(filepath.Join(n.Path(d.path), f[1]), b, 0o644); err != nil {
				return err
			}
		}
	}
	for p, mode := range extraDirs {
		if filepath.Dir(p) != d.path {
			continue
		}
		hp := n.Path(p)
		if err := os.Mkdir(hp, 0o700); err != nil && !os.IsExist(err) {
			return err
		}
		if err := os.Chmod(hp, mode); err != nil {
			return err
		}
	}
	return nil
}

// copyTree recreates dir's real subdirectories and symlinks (and, with
// files, regular files) with their owners and modes inside the host's
// private tmpfs at dir. Skeletons stop four levels deep; sockets, fifos and
// devices are left out (their daemons create them).
func (n *Node) copyTree(dir string, files bool, budget *int64) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable or vanished: not part of the tree
		}
		if skipSkeleton[p] {
			return fs.SkipDir
		}
		if !files && strings.Count(strings.TrimPrefix(p, dir), "/") > 4 {
			return fs.SkipDir
		}
		info, err := os.Lstat(p)
		if err != nil {
			return nil
		}
		st := info.Sys().(*syscall.Stat_t)
		hp := n.Path(p)
		perm := info.Mode() & (fs.ModePerm | fs.ModeSetgid | fs.ModeSetuid | fs.ModeSticky)
		switch {
		case d.IsDir():
			if p != dir {
				if err := os.Mkdir(hp, 0o700); err != nil && !os.IsExist(err) {
					return err
				}
			}
			if err := os.Lchown(hp, int(st.Uid), int(st.Gid)); err != nil {
				return err
			}
			return os.Chmod(hp, perm)
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return nil
			}
			if err := os.Symlink(target, hp); err != nil && !os.IsExist(err) {
				return err
			}
			return os.Lchown(hp, int(st.Uid), int(st.Gid))
		case files && info.Mode().IsRegular():
			if *budget -= info.Size(); *budget < 0 {
				return fmt.Errorf("more than %d MiB to copy", maxCopy>>20)
			}
			if err := copyFile(p, hp); err != nil {
				return err
			}
			if err := os.Lchown(hp, int(st.Uid), int(st.Gid)); err != nil {
				return err
			}
			if err := os.Chmod(hp, perm); err != nil {
				return err
			}
			return os.Chtimes(hp, info.ModTime(), info.ModTime())
		}
		return nil
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
