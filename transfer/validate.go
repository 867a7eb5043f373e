package transfer

import (
	"fmt"
	"path"
	"strings"

	"github.com/migrate-tool/migrate/capture"
	"github.com/migrate-tool/migrate/internal/chroot"
)

// EntryError is an archive entry refused because writing it could touch
// something outside the root, or because it is not allowed in a root.
type EntryError struct {
	Path   string
	Reason string
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("archive entry %s refused: %s", e.Path, e.Reason)
}

// StandardDevices are the only device nodes a root may hold, by path, with
// their major and minor numbers.
var StandardDevices = chroot.Devices

// maxHops bounds symlink resolution, like the kernel's limit.
const maxHops = 40

// Plan is a manifest checked for use on a target: for every entry, the
// path it is written to, with the symlinks of the archive (and of the
// existing root, for deltas) resolved inside the root, so that writing
// never follows a symlink on disk.
type Plan struct {
	M    *capture.Manifest
	Real []string // per entry: resolved path inside the root
	Dels []string // resolved deleted paths (deltas)
}

// linkFunc reports the target of p if p is a symlink in the root as it
// will be (archive symlinks first, then what is on disk).
type linkFunc func(p string) (string, bool)

// Check validates m for extraction: the manifest's own structure, and for
// each entry that its path, symlink target or hardlink source stays inside
// the root once symlinks are resolved, and that device nodes are standard
// ones. onDisk, if not nil, reports symlinks already in the root.
func Check(m *capture.Manifest, onDisk linkFunc) (*Plan, error) {
	if err := m.Validate(); err != nil {
		return nil, &EntryError{Path: "manifest", Reason: err.Error()}
	}
	links := make(map[string]string)
	for i := range m.Entries {
		if e := &m.Entries[i]; e.Type == capture.TypeSymlink {
			links[e.Path] = e.Link
		}
	}
	lookup := func(p string) (string, bool) {
		if t, ok := links[p]; ok {
			return t, true
		}
		if onDisk != nil {
			return onDisk(p)
		}
		return "", false
	}
	pl := &Plan{M: m, Real: make([]string, len(m.Entries))}
	for i := range m.Entries {
		real, err := checkEntry(&m.Entries[i], lookup)
		if err != nil {
			return nil, err
		}
		pl.Real[i] = real
	}
	for _, d := range m.Deleted {
		real, err := resolve(d, false, lookup)
		if err != nil {
			return nil, &EntryError{Path: d, Reason: "deleted path: " + err.Error()}
		}
		pl.Dels = append(pl.Dels, real)
	}
	return pl, nil
}

// CheckEntry validates one entry on its own (no other symlinks known).
func CheckEntry(e *capture.Entry) error {
	_, err := checkEntry(e, func(string) (string, bool) { return "", false })
	return err
}

func checkEntry(e *capture.Entry, lookup linkFunc) (string, error) {
	refuse := func(format string, a ...any) (string, error) {
		return "", &EntryError{Path: e.Path, Reason: fmt.Sprintf(format, a...)}
	}
	if !capture.CleanPath(e.Path) || strings.ContainsRune(e.Path, 0) {
		return refuse("not a clean absolute path inside the root")
	}
	real, err := resolve(e.Path, false, lookup)
	if err != nil {
		return refuse("%v", err)
	}
	switch e.Type {
	case capture.TypeFile, capture.TypeDir, capture.TypeFifo:
	case capture.TypeSymlink:
		if e.Link == "" || strings.ContainsRune(e.Link, 0) {
			return refuse("empty symlink target")
		}
		t := e.Link
		if !path.IsAbs(t) {
			t = path.Dir(e.Path) + "/" + t
		}
		if _, err := resolve(t, true, lookup); err != nil {
			return refuse("symlink to %q: %v", e.Link, err)
		}
	case capture.TypeHardlink:
		if !capture.CleanPath(e.Link) || strings.ContainsRune(e.Link, 0) {
			return refuse("hardlink to %q, which is not a clean path inside the root", e.Link)
		}
		if _, err := resolve(e.Link, false, lookup); err != nil {
			return refuse("hardlink to %q: %v", e.Link, err)
		}
	case capture.TypeCharDev:
		want, ok := StandardDevices[e.Path]
		if !ok || want != [2]uint32{e.Major, e.Minor} {
			return refuse("character device %d:%d is not one of the standard devices (null, zero, full, random, urandom, tty)", e.Major, e.Minor)
		}
	case capture.TypeBlockDev:
		return refuse("block device %d:%d not allowed in a root", e.Major, e.Minor)
	default:
		return refuse("unknown type %q", e.Type)
	}
	return real, nil
}

// resolve resolves p inside the root the way the kernel would inside a
// chroot, following symlinks reported by lookup (the last element only if
// followLast), and fails if a ".." would climb above the root or the
// symlinks loop.
func resolve(p string, followLast bool, lookup linkFunc) (string, error) {
	todo := split(p)
	var stack []string
	hops := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return "", fmt.Errorf("resolves outside the root")
			}
			stack = stack[:len(stack)-1]
			continue
		}
		stack = append(stack, c)
		if len(todo) == 0 && !followLast {
			break
		}
		t, ok := lookup("/" + strings.Join(stack, "/"))
		if !ok {
			continue
		}
		if hops++; hops > maxHops {
			return "", fmt.Errorf("too many levels of symlinks")
		}
		stack = stack[:len(stack)-1]
		if path.IsAbs(t) {
			stack = nil
		}
		todo = append(split(t), todo...)
	}
	if len(stack) == 0 {
		if followLast {
			return "/", nil
		}
		return "", fmt.Errorf("resolves to the root itself")
	}
	return "/" + strings.Join(stack, "/"), nil
}

func split(p string) []string {
	return strings.Split(strings.Trim(p, "/"), "/")
}
