package transfer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/migrate-tool/migrate/capture"
)

// env builds the run-time environment of a root: the directories the
// service expects, the standard device nodes (made with mknod, never the
// host's /dev bound in), accounts merged into etc/passwd, etc/group and
// etc/shadow (locked), and the target's resolv.conf and localtime.
type env struct {
	root *Root
	m    *capture.Manifest
}

// standardDirs exist in every root; mode applies only when they are made.
var standardDirs = []struct {
	path string
	mode uint32
}{
	{"/proc", 0o555}, {"/dev", 0o755}, {"/dev/pts", 0o755}, {"/dev/shm", 0o1777},
	{"/tmp", 0o1777}, {"/run", 0o755}, {"/etc", 0o755}, {"/var", 0o755}, {"/var/tmp", 0o1777},
}

// buildEnv prepares the root of l for running its service.
func buildEnv(l Layout, m *capture.Manifest) error {
	root, err := openExistingRoot(l.Root())
	if err != nil {
		return err
	}
	defer root.Close()
	e := &env{root: root, m: m}
	steps := []func() error{e.dirs, e.devices, e.accounts, e.hostFiles}
	for _, step := range steps {
		if err := step(); err != nil {
			return diskHint(fmt.Errorf("build environment of %s: %w", l.Name, err))
		}
	}
	return nil
}

// real resolves p through the root's symlinks, inside the root.
func (e *env) real(p string) (string, error) {
	r, err := resolve(p, false, e.root.readlink)
	if err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	return r, nil
}

func (e *env) dirs() error {
	for _, d := range standardDirs {
		p, err := e.real(d.path)
		if err != nil {
			return err
		}
		if st, err := e.root.Lstat(p); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			continue
		}
		if err := e.root.Mkdir(p, Meta{Mode: d.mode}); err != nil {
			return err
		}
	}
	for _, d := range e.m.RuntimeDirs {
		if !capture.CleanPath(d.Path) {
			return &EntryError{Path: d.Path, Reason: "runtime directory is not a clean absolute path"}
		}
		p, err := e.real(d.Path)
		if err != nil {
			return &EntryError{Path: d.Path, Reason: err.Error()}
		}
		if err := e.root.Mkdir(p, Meta{Mode: d.Mode, UID: d.UID, GID: d.GID}); err != nil {
			return err
		}
	}
	return nil
}

func (e *env) devices() error {
	names := make([]string, 0, len(StandardDevices))
	for p := range StandardDevices {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, p := range names {
		d := StandardDevices[p]
		if err := e.root.Mknod(p, unix.S_IFCHR, d[0], d[1], Meta{Mode: 0o666}); err != nil {
			return err
		}
	}
	links := [][2]string{{"/dev/fd", "/proc/self/fd"}, {"/dev/stdin", "/proc/self/fd/0"},
		{"/dev/stdout", "/proc/self/fd/1"}, {"/dev/stderr", "/proc/self/fd/2"}, {"/dev/ptmx", "pts/ptmx"}}
	for _, l := range links {
		if err := e.root.Symlink(l[0], l[1], Meta{}); err != nil {
			return err
		}
	}
	return nil
}

// accounts adds the manifest's users and groups that the root's files do
// not have yet. Existing lines are kept as they are.
func (e *env) accounts() error {
	var pw, gr, sh [][]string
	for _, u := range e.m.Users {
		pw = append(pw, []string{u.Name, "x", strconv.Itoa(u.UID), strconv.Itoa(u.GID), u.Gecos, u.Home, u.Shell})
		sh = append(sh, []string{u.Name, "!", "", "0", "99999", "7", "", "", ""})
	}
	for _, g := range e.m.Groups {
		gr = append(gr, []string{g.Name, "x", strconv.Itoa(g.GID), strings.Join(g.Members, ",")})
	}
	for _, f := range []struct {
		path  string
		add   [][]string
		mode  uint32
		group string
	}{
		{"/etc/passwd", pw, 0o644, ""}, {"/etc/group", gr, 0o644, ""}, {"/etc/shadow", sh, 0o640, "shadow"},
	} {
		if err := e.merge(f.path, f.add, f.mode, e.gid(f.group)); err != nil {
			return err
		}
	}
	return nil
}

func (e *env) gid(name string) int {
	for _, g := range e.m.Groups {
		if g.Name == name {
			return g.GID
		}
	}
	return 0
}

func (e *env) merge(p string, add [][]string, mode uint32, gid int) error {
	real, err := e.real(p)
	if err != nil {
		return err
	}
	var old []byte
	meta := Meta{Mode: mode, GID: gid}
	if f, err := e.root.Open(real); err == nil {
		old, err = io.ReadAll(f)
		if st, serr := f.Stat(); serr == nil {
			meta = metaFromStat(st)
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
	}
	have := map[string]bool{}
	for _, line := range strings.Split(string(old), "\n") {
		if name, _, ok := strings.Cut(line, ":"); ok {
			have[name] = true
		}
	}
	var buf bytes.Buffer
	buf.Write(old)
	if len(old) > 0 && old[len(old)-1] != '\n' {
		buf.WriteByte('\n')
	}
	added := false
	for _, fields := range add {
		if have[fields[0]] || strings.ContainsAny(strings.Join(fields, ""), ":\n") {
			continue
		}
		have[fields[0]] = true
		buf.WriteString(strings.Join(fields, ":") + "\n")
		added = true
	}
	if !added && old != nil {
		return nil
	}
	return e.root.writeBytes(real, buf.Bytes(), meta)
}

func metaFromStat(fi os.FileInfo) Meta {
	m := Meta{Mode: uint32(fi.Mode().Perm()), MTime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		m.Mode, m.UID, m.GID = st.Mode&0o7777, int(st.Uid), int(st.Gid)
	}
	return m
}

// hostFiles copies the target's resolv.conf and localtime into the root.
func (e *env) hostFiles() error {
	for _, p := range []string{"/etc/resolv.conf", "/etc/localtime"} {
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read target's %s: %w", p, err)
		}
		real, err := e.real(p)
		if err != nil {
			return err
		}
		if err := e.root.writeBytes(real, b, Meta{Mode: 0o644}); err != nil {
			return err
		}
	}
	return nil
}

// writeBytes writes data to p (temp name, rename).
func (r *Root) writeBytes(p string, data []byte, m Meta) error {
	sum := sha256.Sum256(data)
	if m.MTime.IsZero() {
		m.MTime = time.Now()
	}
	return r.WriteFile(p, bytes.NewReader(data), int64(len(data)), hex.EncodeToString(sum[:]), m)
}

// resolveArgv0 returns argv[0] as a path inside the root: absolute as
// given, or found in the root's PATH directories.
func resolveArgv0(root *Root, argv0 string) (string, error) {
	if path.IsAbs(argv0) {
		return argv0, nil
	}
	for _, dir := range strings.Split(defaultPath, ":") {
		p := dir + "/" + argv0
		real, err := resolve(p, true, root.readlink)
		if err != nil {
			continue
		}
		if st, err := root.Lstat(real); err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Mode&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("start command %q not found in the root's %s", argv0, defaultPath)
}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
