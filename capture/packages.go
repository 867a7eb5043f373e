package capture

import (
	"errors"
	"os"
	"sort"
	"strings"

	"github.com/migrate-tool/migrate/internal/dpkg"
)

// packages wraps the package database (dpkg, or rpm as a fallback).
type packages struct {
	ok    bool
	db    *dpkg.DB
	rpm   *rpmDB
	seen  map[string]bool
	cache map[string][]string // canonical path -> owners (dpkg)
}

func openPackages(c *collector) *packages {
	pk := &packages{seen: map[string]bool{}, cache: map[string][]string{}}
	db, err := dpkg.Open("")
	if err == nil {
		pk.db, pk.ok = db, true
		go db.LoadLists() // meanwhile: the owners of the collected paths are looked up in them later
		return pk
	}
	if r := openRPM(); r != nil {
		pk.rpm, pk.ok = r, true
		c.note("no dpkg database; using rpm")
		return pk
	}
	c.note("no package database (dpkg or rpm): package origins unknown, admin-added files not told apart")
	return pk
}

// prefetch looks up the owners of many canonical paths in one scan of
// the dpkg file lists, trying each path's merged-/usr spellings.
func (pk *packages) prefetch(paths []string) {
	if pk.db == nil {
		return
	}
	want := map[string]string{}
	for _, p := range paths {
		if _, ok := pk.cache[p]; ok || p == "" {
			continue
		}
		pk.cache[p] = nil
		for _, a := range spellings(p) {
			want[a] = p
		}
	}
	if len(want) == 0 {
		return
	}
	for p, o := range pk.db.Search(want) {
		pk.cache[p] = o
	}
}

// spellings returns the spellings a canonical path may have in package
// file lists: itself and, on merged-/usr systems, /lib/x for /usr/lib/x.
func spellings(p string) []string {
	out := []string{p}
	if rest, ok := strings.CutPrefix(p, "/usr/"); ok {
		d, _, _ := strings.Cut(rest, "/")
		if usrmergeDirs[d] && usrmerged(d) {
			out = append(out, "/"+rest)
		}
	}
	return out
}

func (pk *packages) owners(p string) []string {
	switch {
	case pk.db != nil:
		pk.prefetch([]string{p})
		return pk.cache[p]
	case pk.rpm != nil:
		return pk.rpm.owners(p)
	}
	return nil
}

func (pk *packages) owner(p string) string {
	if o := pk.owners(p); len(o) > 0 {
		pk.seen[o[0]] = true
		return o[0]
	}
	return ""
}

func (pk *packages) installed(name string) bool {
	switch {
	case pk.db != nil:
		return pk.db.Lookup(name) != nil
	case pk.rpm != nil:
		return pk.rpm.installed(name)
	}
	return false
}

// files returns a package's files and its conffiles (path -> changed).
func (pk *packages) files(name string) ([]string, map[string]bool) {
	switch {
	case pk.db != nil:
		p := pk.db.Lookup(name)
		if p == nil {
			return nil, nil
		}
		files, _ := pk.db.Files(p)
		conf := map[string]bool{}
		for _, cf := range p.Conffiles {
			if cf.Obsolete {
				continue
			}
			sum, err := md5File(cf.Path)
			if err == nil {
				conf[cf.Path] = sum != cf.MD5
			} else if errors.Is(err, os.ErrNotExist) {
				conf[cf.Path] = true
			}
		}
		return files, conf
	case pk.rpm != nil:
		return pk.rpm.files(name)
	}
	return nil, nil
}

func (pk *packages) used(es []Entry) []Package {
	names := map[string]bool{}
	for _, e := range es {
		if e.Package != "" {
			names[e.Package] = true
		}
	}
	var out []Package
	for n := range names {
		p := Package{Name: n}
		if pk.db != nil {
			if d := pk.db.Lookup(n); d != nil {
				p.Version, p.Arch, p.Manager = d.Version, d.Arch, "dpkg"
			}
		} else if pk.rpm != nil {
			p.Version, p.Manager = pk.rpm.version(n), "rpm"
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
