// Package capture collects a running service (its package files, changed
// and admin-added configuration, shared-library closure, traced start-up
// commands, data and runtime needs) into one verifiable archive: a
// zstd-compressed PAX tar whose first entry is a versioned manifest. The
// format is specified in docs/archive-format.md.
package capture

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"
)

// ManifestVersion is the manifest format this package writes and reads.
const ManifestVersion = 1

// Manifest kinds.
const (
	KindFull  = "full"
	KindDelta = "delta"
)

// Entry types.
const (
	TypeFile     = "file"
	TypeDir      = "dir"
	TypeSymlink  = "symlink"
	TypeHardlink = "hardlink"
	TypeCharDev  = "chardev"
	TypeBlockDev = "blockdev"
	TypeFifo     = "fifo"
)

// Manifest describes one captured service: where it came from, how to
// start and stop it, what it needs at run time and every captured path.
type Manifest struct {
	Version int    `json:"version"`
	Kind    string `json:"kind"`           // "full" | "delta"
	Base    string `json:"base,omitempty"` // delta only: Digest of the base manifest

	Host    string    `json:"host"`
	Service string    `json:"service"`
	Created time.Time `json:"created"`
	OS      string    `json:"os,omitempty"`     // PRETTY_NAME from /etc/os-release
	Arch    string    `json:"arch,omitempty"`   // machine, e.g. "x86_64"
	Kernel  string    `json:"kernel,omitempty"` // kernel release of the source host

	Entries []Entry  `json:"entries"`
	Deleted []string `json:"deleted,omitempty"` // delta only: paths gone since the base

	Users    []User    `json:"users,omitempty"`
	Groups   []Group   `json:"groups,omitempty"`
	Packages []Package `json:"packages,omitempty"` // packages files were taken from

	Start       []string `json:"start,omitempty"` // argv, foreground start
	Stop        []string `json:"stop,omitempty"`  // argv; empty means "send SIGTERM"
	RuntimeDirs []Dir    `json:"runtime_dirs,omitempty"`
	Ports       []Port   `json:"ports,omitempty"`
	Notes       []string `json:"notes,omitempty"`
}

// Entry is one captured path.
type Entry struct {
	Path   string    `json:"path"` // absolute path in the captured system
	Type   string    `json:"type"`
	Mode   uint32    `json:"mode"` // permission bits incl. setuid, setgid, sticky
	UID    int       `json:"uid"`
	GID    int       `json:"gid"`
	User   string    `json:"user,omitempty"`
	Group  string    `json:"group,omitempty"`
	Size   int64     `json:"size,omitempty"`   // files only
	SHA256 string    `json:"sha256,omitempty"` // files only, lowercase hex
	Link   string    `json:"link,omitempty"`   // symlink target, or hardlink source path
	Major  uint32    `json:"major,omitempty"`
	Minor  uint32    `json:"minor,omitempty"`
	MTime  time.Time `json:"mtime"`

	Package string   `json:"package,omitempty"` // "name" of the owning dpkg/rpm package
	Reasons []string `json:"reasons"`           // why it is here, e.g. "package:nginx-core"
}

// User is an account the service needs.
type User struct {
	Name  string `json:"name"`
	UID   int    `json:"uid"`
	GID   int    `json:"gid"`
	Gecos string `json:"gecos,omitempty"`
	Home  string `json:"home"`
	Shell string `json:"shell"`
}

// Group is a group the service needs.
type Group struct {
	Name    string   `json:"name"`
	GID     int      `json:"gid"`
	Members []string `json:"members,omitempty"`
}

// Dir is a directory the service expects to exist (and may be empty) when
// it starts: /run, /var/lib/nginx, /var/log/nginx, ...
type Dir struct {
	Path  string `json:"path"`
	Mode  uint32 `json:"mode"`
	UID   int    `json:"uid"`
	GID   int    `json:"gid"`
	User  string `json:"user,omitempty"`
	Group string `json:"group,omitempty"`
}

// Port is a socket the service listens on.
type Port struct {
	Proto string `json:"proto"` // "tcp" | "udp" | "tcp6" | "udp6"
	Addr  string `json:"addr"`  // listening address, "0.0.0.0", "::", "127.0.0.1"
	Port  int    `json:"port"`
}

// Package is an installed package some captured files belong to.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	Arch    string `json:"arch,omitempty"`
	Manager string `json:"manager,omitempty"` // "dpkg" | "rpm"
}

// Digest returns the hex sha256 of the manifest's JSON encoding; a delta's
// Base names its base manifest this way.
func (m *Manifest) Digest() (string, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encode manifest: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// Lookup returns the entry for path, or nil.
func (m *Manifest) Lookup(p string) *Entry {
	for i := range m.Entries {
		if m.Entries[i].Path == p {
			return &m.Entries[i]
		}
	}
	return nil
}

// Validate checks the manifest's structure: version, kind, clean absolute
// unique paths, known types, checksums on files, hardlinks to earlier files.
func (m *Manifest) Validate() error {
	if m.Version != ManifestVersion {
		return fmt.Errorf("manifest version %d not supported (want %d)", m.Version, ManifestVersion)
	}
	if m.Kind != KindFull && m.Kind != KindDelta {
		return fmt.Errorf("manifest kind %q not supported", m.Kind)
	}
	seen := make(map[string]string, len(m.Entries))
	for i := range m.Entries {
		e := &m.Entries[i]
		if err := e.validate(seen); err != nil {
			return fmt.Errorf("entry %s: %w", e.Path, err)
		}
		seen[e.Path] = e.Type
	}
	for _, d := range m.Deleted {
		if !CleanPath(d) {
			return fmt.Errorf("deleted path %q is not a clean absolute path", d)
		}
	}
	return nil
}

func (e *Entry) validate(seen map[string]string) error {
	if !CleanPath(e.Path) {
		return fmt.Errorf("not a clean absolute path")
	}
	if _, dup := seen[e.Path]; dup {
		return fmt.Errorf("listed twice")
	}
	switch e.Type {
	case TypeFile:
		if e.Size < 0 {
			return fmt.Errorf("negative size")
		}
		if len(e.SHA256) != 64 {
			return fmt.Errorf("missing sha256")
		}
	case TypeHardlink:
		if t, ok := seen[e.Link]; !ok || t != TypeFile {
			return fmt.Errorf("hardlink source %q is not an earlier file entry", e.Link)
		}
	case TypeSymlink:
		if e.Link == "" {
			return fmt.Errorf("symlink without target")
		}
	case TypeDir, TypeCharDev, TypeBlockDev, TypeFifo:
	default:
		return fmt.Errorf("unknown type %q", e.Type)
	}
	return nil
}

// CleanPath reports whether p is an absolute, clean path other than "/"
// with no ".." element: the only paths an archive may hold.
func CleanPath(p string) bool {
	if p == "" || p[0] != '/' || p == "/" || path.Clean(p) != p {
		return false
	}
	return !strings.Contains(p, "/../") && !strings.HasSuffix(p, "/..")
}
