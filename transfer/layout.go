package transfer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/migrate-tool/migrate/capture"
	"github.com/migrate-tool/migrate/internal/hint"
)

// DefaultDest is the directory on the target under which each service gets
// DEST/NAME/root (the chroot) next to its state files.
const DefaultDest = "/srv/migrate"

// Files in a service directory DEST/NAME.
const (
	rootDir      = "root"          // the chroot
	manifestFile = "manifest.json" // manifest of the root (or of the one being shipped)
	completeFile = "complete"      // digest of the manifest fully applied and verified
	pendingFile  = "pending"       // digest of the manifest being shipped
)

// ErrUnknownService is returned for a NAME with no directory on the target.
var ErrUnknownService = errors.New("no such service on the target")

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Layout names the paths of one service on the target.
type Layout struct {
	Dest string // e.g. /srv/migrate
	Name string // e.g. nginx
}

// NewLayout checks name and returns the service's layout under dest
// (DefaultDest if empty).
func NewLayout(dest, name string) (Layout, error) {
	if dest == "" {
		dest = DefaultDest
	}
	if !nameRE.MatchString(name) {
		return Layout{}, hint.With(fmt.Errorf("bad service name %q", name), "use letters, digits, '.', '_' and '-' (e.g. the captured service's name)")
	}
	if !filepath.IsAbs(dest) {
		return Layout{}, hint.With(fmt.Errorf("--dest %q is not an absolute path", dest), "give the directory on the target as an absolute path")
	}
	return Layout{Dest: filepath.Clean(dest), Name: name}, nil
}

// Dir is DEST/NAME, holding the root and the state files.
func (l Layout) Dir() string { return filepath.Join(l.Dest, l.Name) }

// Root is DEST/NAME/root, the chroot.
func (l Layout) Root() string { return filepath.Join(l.Dir(), rootDir) }

func (l Layout) file(name string) string { return filepath.Join(l.Dir(), name) }

// Complete returns the digest of the manifest the root was completed
// with, or "" if the root is not complete.
func (l Layout) Complete() string {
	b, err := os.ReadFile(l.file(completeFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Manifest reads the service's stored manifest.
func (l Layout) Manifest() (*capture.Manifest, error) {
	b, err := os.ReadFile(l.file(manifestFile))
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(l.Dir()); serr != nil {
			return nil, hint.With(fmt.Errorf("service %s: %w (%s)", l.Name, ErrUnknownService, l.Dir()),
				"ship it first with `migrate transfer ARCHIVE --to HOST --name "+l.Name+"`, or check --dest")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("read manifest of %s: %w", l.Name, err)
	}
	var m capture.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode manifest of %s: %w", l.Name, err)
	}
	return &m, nil
}

// makeDir creates DEST/NAME with mode 0700: the root may hold set-uid
// files from the archive, which users of the target must not reach.
func (l Layout) makeDir() error {
	if err := os.MkdirAll(l.Dest, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", l.Dest, err)
	}
	if err := os.Mkdir(l.Dir(), 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create %s: %w", l.Dir(), err)
	}
	fi, err := os.Lstat(l.Dir())
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", l.Dir())
	}
	return os.Chmod(l.Dir(), 0o700)
}

// writeState writes a state file in the service directory atomically.
func (l Layout) writeState(name string, data []byte) error {
	tmp, err := os.CreateTemp(l.Dir(), "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	_, werr := tmp.Write(data)
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), l.file(name))
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", name, werr)
	}
	return nil
}

func (l Layout) removeState(name string) error {
	if err := os.Remove(l.file(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}
