// Package dpkg reads the Debian package database directly from
// /var/lib/dpkg: the status file (installed packages, versions,
// conffiles with their md5), info/PKG.list (files of a package) and
// info/PKG.md5sums. It never runs dpkg.
package dpkg

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// DefaultAdmin is dpkg's administrative directory.
const DefaultAdmin = "/var/lib/dpkg"

// Package is one stanza of the status file.
type Package struct {
	Name      string
	Arch      string
	Version   string
	Status    string // e.g. "install ok installed"
	MultiArch string
	Conffiles []Conffile
}

// Installed reports whether the package's files are on disk.
func (p *Package) Installed() bool {
	f := strings.Fields(p.Status)
	return len(f) == 3 && (f[2] == "installed" || f[2] == "half-configured" || f[2] == "unpacked" || f[2] == "triggers-awaited" || f[2] == "triggers-pending")
}

// Conffile is a configuration file with the md5 dpkg recorded for it.
type Conffile struct {
	Path     string
	MD5      string
	Obsolete bool
}

// ParseStatus parses a dpkg status file (RFC 822-like stanzas).
func ParseStatus(r io.Reader) ([]Package, error) {
	var pkgs []Package
	var cur Package
	var field string
	flush := func() {
		if cur.Name != "" {
			pkgs = append(pkgs, cur)
		}
		cur, field = Package{}, ""
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for line := 1; sc.Scan(); line++ {
		l := sc.Text()
		if strings.TrimSpace(l) == "" {
			flush()
			continue
		}
		if l[0] == ' ' || l[0] == '\t' {
			if field == "Conffiles" {
				c, err := parseConffile(l)
				if err != nil {
					return nil, fmt.Errorf("status line %d: %w", line, err)
				}
				cur.Conffiles = append(cur.Conffiles, c)
			}
			continue
		}
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			return nil, fmt.Errorf("status line %d: no field name in %q", line, trunc(l))
		}
		field, v = k, strings.TrimSpace(v)
		switch k {
		case "Package":
			cur.Name = v
		case "Architecture":
			cur.Arch = v
		case "Version":
			cur.Version = v
		case "Status":
			cur.Status = v
		case "Multi-Arch":
			cur.MultiArch = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read status: %w", err)
	}
	flush()
	return pkgs, nil
}

func parseConffile(l string) (Conffile, error) {
	f := strings.Fields(l)
	if len(f) < 2 || !strings.HasPrefix(f[0], "/") {
		return Conffile{}, fmt.Errorf("bad conffile line %q", trunc(l))
	}
	c := Conffile{Path: f[0], MD5: f[1]}
	for _, flag := range f[2:] {
		if flag == "obsolete" {
			c.Obsolete = true
		}
	}
	return c, nil
}

func trunc(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// DB is a loaded dpkg database.
type DB struct {
	Admin    string
	Packages map[string]*Package // by name (and "name:arch" for multi-arch same)
	owners   map[string][]string // path -> package names, built on first Owner call

	infoOnce  sync.Once
	infoNames map[string]bool // the names in admin/info, read once; nil if unreadable

	listsOnce sync.Once
	listPkgs  []*Package // every installed package, by name, once LoadLists ran
	lists     [][]byte   // their info/*.list files (nil if unreadable)
}

// Open reads admin/status. A missing database is an error wrapping
// os.ErrNotExist (not a Debian host).
func Open(admin string) (*DB, error) {
	if admin == "" {
		admin = DefaultAdmin
	}
	f, err := os.Open(filepath.Join(admin, "status"))
	if err != nil {
		return nil, fmt.Errorf("dpkg database: %w", err)
	}
	defer f.Close()
	pkgs, err := ParseStatus(f)
	if err != nil {
		return nil, fmt.Errorf("dpkg database: %w", err)
	}
	db := &DB{Admin: admin, Packages: make(map[string]*Package, len(pkgs))}
	for i := range pkgs {
		p := &pkgs[i]
		if !p.Installed() {
			continue
		}
		db.Packages[p.Name+":"+p.Arch] = p
		if _, dup := db.Packages[p.Name]; !dup {
			db.Packages[p.Name] = p
		}
	}
	return db, nil
}

// Lookup returns an installed package by "name" or "name:arch".
func (db *DB) Lookup(name string) *Package { return db.Packages[name] }

// infoFile returns admin/info/NAME[.:arch].EXT, whichever exists.
// The directory is listed once (one getdents instead of a stat per
// package); a name it lacks is looked up again, in case dpkg added it since.
func (db *DB) infoFile(p *Package, ext string) string {
	db.infoOnce.Do(func() {
		d, err := os.Open(filepath.Join(db.Admin, "info"))
		if err != nil {
			return
		}
		defer d.Close()
		names, err := d.Readdirnames(-1)
		if err != nil {
			return
		}
		db.infoNames = make(map[string]bool, len(names))
		for _, n := range names {
			db.infoNames[n] = true
		}
	})
	for _, n := range []string{p.Name + ":" + p.Arch + "." + ext, p.Name + "." + ext} {
		if db.infoNames[n] {
			return filepath.Join(db.Admin, "info", n)
		}
	}
	for _, n := range []string{p.Name + ":" + p.Arch, p.Name} {
		f := filepath.Join(db.Admin, "info", n+"."+ext)
		if _, err := os.Lstat(f); err == nil {
			return f
		}
	}
	return ""
}

// readList reads file f as long as fstat says it is: unlike os.ReadFile,
// no second read to see EOF, one system call less for each of the ~800
// lists. A list dpkg rewrites meanwhile is read as it was.
func readList(f string) ([]byte, error) {
	fd, err := os.Open(f)
	if err != nil {
		return nil, err
	}
	defer fd.Close()
	fi, err := fd.Stat()
	if err != nil {
		return nil, err
	}
	b := make([]byte, fi.Size())
	n, err := io.ReadFull(fd, b)
	if err == io.ErrUnexpectedEOF {
		err = nil // shrank meanwhile
	}
	return b[:n], err
}

// Files returns the paths listed in the package's info/*.list, in order
// (directories included). "/." is dropped.
func (db *DB) Files(p *Package) ([]string, error) {
	f := db.infoFile(p, "list")
	if f == "" {
		return nil, fmt.Errorf("dpkg: no file list for %s", p.Name)
	}
	b, err := os.ReadFile(f)
	if err != nil {
		return nil, fmt.Errorf("dpkg: %w", err)
	}
	return ParseList(b), nil
}

// ParseList parses an info/*.list file.
func ParseList(b []byte) []string {
	var out []string
	for _, l := range bytes.Split(b, []byte{'\n'}) {
		s := string(bytes.TrimRight(l, "\r"))
		if s == "" || s == "/." || s[0] != '/' {
			continue
		}
		out = append(out, s)
	}
	return out
}

// MD5Sums returns the package's info/*.md5sums as absolute path -> md5.
// A package without the file yields an empty map.
func (db *DB) MD5Sums(p *Package) (map[string]string, error) {
	f := db.infoFile(p, "md5sums")
	if f == "" {
		return map[string]string{}, nil
	}
	b, err := os.ReadFile(f)
	if err != nil {
		return nil, fmt.Errorf("dpkg: %w", err)
	}
	return ParseMD5Sums(b)
}

// LoadLists reads every installed package's file list into memory, once
// (four readers at a time), for Search to scan; it may run concurrently
// with anything, Search included, which waits for it. A capture starts it
// at once, so the reading (7 MB on a desktop-sized Debian) overlaps the
// rest of the collection, and each later Search only scans memory.
func (db *DB) LoadLists() {
	db.listsOnce.Do(func() {
		var pkgs []*Package
		seen := map[*Package]bool{}
		for _, p := range db.Packages {
			if !seen[p] {
				seen[p] = true
				pkgs = append(pkgs, p)
			}
		}
		sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Name < pkgs[j].Name })
		lists := make([][]byte, len(pkgs))
		var wg sync.WaitGroup
		for w := range searchWorkers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < len(pkgs); i += searchWorkers {
					if f := db.infoFile(pkgs[i], "list"); f != "" {
						lists[i], _ = readList(f)
					}
				}
			}()
		}
		wg.Wait()
		db.listPkgs, db.lists = pkgs, lists
	})
}

// searchWorkers read and scan the file lists concurrently.
const searchWorkers = 4

// Search returns, for each path listed by an installed package that is a
// key of want, want's value mapped to the names of the packages listing
// it (in name order). Callers pass every spelling a path may have in the
// lists (e.g. /lib/x and /usr/lib/x on merged-/usr systems) with the
// spelling they want back as the value. The lists are read once (see
// LoadLists) and scanned concurrently; no per-line allocation is made.
func (db *DB) Search(want map[string]string) map[string][]string {
	db.LoadLists()
	type hit struct {
		key string
		pkg int
	}
	results := make([][]hit, searchWorkers)
	var wg sync.WaitGroup
	for w := range searchWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(db.lists); i += searchWorkers {
				for b := db.lists[i]; len(b) > 0; {
					line := b
					if n := bytes.IndexByte(b, '\n'); n >= 0 {
						line, b = b[:n], b[n+1:]
					} else {
						b = nil
					}
					if key, ok := want[string(line)]; ok {
						results[w] = append(results[w], hit{key, i})
					}
				}
			}
		}()
	}
	wg.Wait()
	var all []hit
	for _, r := range results {
		all = append(all, r...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].pkg < all[j].pkg })
	out := make(map[string][]string)
	for _, h := range all {
		l := out[h.key]
		if n := db.listPkgs[h.pkg].Name; len(l) == 0 || l[len(l)-1] != n {
			out[h.key] = append(l, n)
		}
	}
	return out
}

// ParseMD5Sums parses "md5  relative/path" lines.
func ParseMD5Sums(b []byte) (map[string]string, error) {
	m := make(map[string]string)
	for i, l := range strings.Split(string(b), "\n") {
		if l == "" {
			continue
		}
		sum, p, ok := strings.Cut(l, "  ")
		if !ok || len(sum) != 32 {
			return nil, fmt.Errorf("md5sums line %d: malformed %q", i+1, trunc(l))
		}
		m["/"+strings.TrimPrefix(p, "/")] = sum
	}
	return m, nil
}

// Owners returns the names of the packages whose file lists contain path
// exactly (as dpkg recorded it: /lib/x and /usr/lib/x are different keys;
// callers resolve merged-/usr themselves, see OwnersFunc).
func (db *DB) Owners(path string) []string {
	if db.owners == nil {
		db.buildOwners(nil)
	}
	return db.owners[path]
}

// IndexOwners builds the path index with every listed path passed through
// canon (e.g. merged-/usr resolution), so Owners can be asked about
// canonical paths. canon may be nil.
func (db *DB) IndexOwners(canon func(string) string) { db.buildOwners(canon) }

func (db *DB) buildOwners(canon func(string) string) {
	db.owners = make(map[string][]string, 1<<16)
	seen := map[*Package]bool{}
	for _, p := range db.Packages {
		if seen[p] {
			continue
		}
		seen[p] = true
		files, err := db.Files(p)
		if err != nil {
			continue
		}
		for _, f := range files {
			if canon != nil {
				f = canon(f)
			}
			if l := db.owners[f]; len(l) == 0 || l[len(l)-1] != p.Name {
				db.owners[f] = append(l, p.Name)
			}
		}
	}
}
