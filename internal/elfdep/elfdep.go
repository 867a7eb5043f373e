// Package elfdep computes the shared-library closure of ELF executables
// and libraries by reading their dynamic sections (DT_NEEDED, DT_RPATH,
// DT_RUNPATH, PT_INTERP) and searching like the dynamic loader: RPATH,
// RUNPATH, the ld.so.conf directories, then the default directories. It
// never runs the binaries.
package elfdep

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ErrNotELF marks a file that is not an ELF object.
var ErrNotELF = errors.New("not an ELF file")

// File is what the loader needs from one ELF object.
type File struct {
	Path    string
	Interp  string // PT_INTERP, e.g. /lib64/ld-linux-x86-64.so.2
	Needed  []string
	RPath   []string
	RunPath []string
	Class   elf.Class
	Machine elf.Machine
}

// Read parses the dynamic section of the ELF file at path. A file that
// is not ELF returns an error wrapping ErrNotELF.
func Read(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var magic [4]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil || string(magic[:]) != elf.ELFMAG {
		return nil, fmt.Errorf("%s: %w", path, ErrNotELF)
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", path, ErrNotELF, err)
	}
	defer ef.Close()
	out := &File{Path: path, Class: ef.Class, Machine: ef.Machine}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err == nil {
				out.Interp = strings.TrimRight(string(b), "\x00")
			}
		}
	}
	if ef.Section(".dynamic") == nil && dynProg(ef) == nil {
		return out, nil // static
	}
	if out.Needed, err = ef.DynString(elf.DT_NEEDED); err != nil {
		return nil, fmt.Errorf("%s: read DT_NEEDED: %w", path, err)
	}
	out.RPath = splitPath(ef, elf.DT_RPATH)
	out.RunPath = splitPath(ef, elf.DT_RUNPATH)
	return out, nil
}

func dynProg(ef *elf.File) *elf.Prog {
	for _, p := range ef.Progs {
		if p.Type == elf.PT_DYNAMIC {
			return p
		}
	}
	return nil
}

func splitPath(ef *elf.File, tag elf.DynTag) []string {
	v, _ := ef.DynString(tag)
	var out []string
	for _, s := range v {
		for _, d := range strings.Split(s, ":") {
			if d != "" {
				out = append(out, d)
			}
		}
	}
	return out
}

// Resolver finds libraries the way ld.so does on this host.
type Resolver struct {
	Dirs  []string // ld.so.conf directories, then the defaults
	LIB   string   // expansion of $LIB
	PLAT  string   // expansion of $PLATFORM
	cache map[string]*File
}

// DefaultDirs are the loader's built-in directories on Debian amd64.
var DefaultDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}

// NewResolver reads /etc/ld.so.conf (following include globs).
func NewResolver() *Resolver {
	r := &Resolver{LIB: "lib/x86_64-linux-gnu", PLAT: "x86_64", cache: map[string]*File{}}
	seen := map[string]bool{}
	readConf("/etc/ld.so.conf", &r.Dirs, seen, 0)
	for _, d := range DefaultDirs {
		if !seen[d] {
			seen[d] = true
			r.Dirs = append(r.Dirs, d)
		}
	}
	return r
}

func readConf(path string, dirs *[]string, seen map[string]bool, depth int) {
	f, err := os.Open(path)
	if err != nil || depth > 8 {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(l, '#'); i >= 0 {
			l = strings.TrimSpace(l[:i])
		}
		switch {
		case l == "":
		case strings.HasPrefix(l, "include "):
			pat := strings.TrimSpace(strings.TrimPrefix(l, "include "))
			if !filepath.IsAbs(pat) {
				pat = filepath.Join(filepath.Dir(path), pat)
			}
			ms, _ := filepath.Glob(pat)
			sort.Strings(ms)
			for _, m := range ms {
				readConf(m, dirs, seen, depth+1)
			}
		case strings.HasPrefix(l, "/"):
			d := filepath.Clean(strings.Fields(l)[0])
			if !seen[d] {
				seen[d] = true
				*dirs = append(*dirs, d)
			}
		}
	}
}

// Read is Read with a cache.
func (r *Resolver) Read(path string) (*File, error) {
	if f, ok := r.cache[path]; ok {
		return f, nil
	}
	f, err := Read(path)
	if err != nil {
		return nil, err
	}
	r.cache[path] = f
	return f, nil
}

// Resolve finds the library name needed by obj; exe supplies inherited
// DT_RPATH (nil for none). It returns "" if not found.
func (r *Resolver) Resolve(name string, obj, exe *File) string {
	if strings.Contains(name, "/") {
		if r.compatible(name, obj) {
			return name
		}
		return ""
	}
	var dirs []string
	if len(obj.RunPath) == 0 {
		dirs = append(dirs, r.expand(obj.RPath, obj)...)
		if exe != nil && exe != obj {
			dirs = append(dirs, r.expand(exe.RPath, exe)...)
		}
	}
	dirs = append(dirs, r.expand(obj.RunPath, obj)...)
	dirs = append(dirs, r.Dirs...)
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if r.compatible(p, obj) {
			return p
		}
	}
	return ""
}

func (r *Resolver) expand(dirs []string, obj *File) []string {
	out := make([]string, 0, len(dirs))
	origin := filepath.Dir(obj.Path)
	for _, d := range dirs {
		for _, kv := range [][2]string{{"$ORIGIN", origin}, {"${ORIGIN}", origin}, {"$LIB", r.LIB}, {"${LIB}", r.LIB}, {"$PLATFORM", r.PLAT}, {"${PLATFORM}", r.PLAT}} {
			d = strings.ReplaceAll(d, kv[0], kv[1])
		}
		if filepath.IsAbs(d) {
			out = append(out, filepath.Clean(d))
		}
	}
	return out
}

func (r *Resolver) compatible(path string, obj *File) bool {
	f, err := r.Read(path)
	return err == nil && f.Class == obj.Class && f.Machine == obj.Machine
}

// Dep is one library in a closure.
type Dep struct {
	Path     string   // as the loader finds it, e.g. /lib/x86_64-linux-gnu/libz.so.1 (often a symlink)
	NeededBy []string // objects whose DT_NEEDED (or PT_INTERP) named it
	Interp   bool     // it is a dynamic loader
}

// Closure is the result of Resolver.Closure.
type Closure struct {
	Deps    map[string]*Dep   // by Path
	Missing map[string]string // unresolved name -> first object needing it
}

// Closure computes the libraries needed, transitively, by the ELF files
// in roots. Non-ELF roots are ignored; static ones contribute nothing.
func (r *Resolver) Closure(roots []string) *Closure {
	c := &Closure{Deps: map[string]*Dep{}, Missing: map[string]string{}}
	type item struct{ f, exe *File }
	var queue []item
	for _, p := range roots {
		f, err := r.Read(p)
		if err != nil {
			continue
		}
		queue = append(queue, item{f, f})
	}
	add := func(path, by string, interp bool) bool {
		d, ok := c.Deps[path]
		if !ok {
			d = &Dep{Path: path}
			c.Deps[path] = d
		}
		d.Interp = d.Interp || interp
		d.NeededBy = append(d.NeededBy, by)
		return !ok
	}
	for len(queue) > 0 {
		it := queue[0]
		queue = queue[1:]
		if it.f.Interp != "" && r.compatible(it.f.Interp, it.f) {
			if add(it.f.Interp, it.f.Path, true) {
				f, _ := r.Read(it.f.Interp)
				queue = append(queue, item{f, it.exe})
			}
		}
		for _, n := range it.f.Needed {
			p := r.Resolve(n, it.f, it.exe)
			if p == "" {
				if _, ok := c.Missing[n]; !ok {
					c.Missing[n] = it.f.Path
				}
				continue
			}
			if add(p, it.f.Path, false) {
				f, _ := r.Read(p)
				queue = append(queue, item{f, it.exe})
			}
		}
	}
	return c
}
