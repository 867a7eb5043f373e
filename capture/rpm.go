package capture

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// rpmDB is the fallback package database on rpm hosts: one `rpm -qa`
// query (the rpm database format is not read directly) lists every
// package's files with their flags and digests.
type rpmDB struct {
	versions map[string]string
	byPkg    map[string][]rpmFile
	byPath   map[string][]string
}

type rpmFile struct {
	path   string
	config bool
	algo   int // 1 md5, 8 sha256
	digest string
}

const rpmQueryFormat = `[%{NAME}\t%{VERSION}-%{RELEASE}\t%{FILEFLAGS}\t%{FILEDIGESTALGO}\t%{FILEDIGESTS}\t%{FILENAMES}\n]`

func openRPM() *rpmDB {
	if _, err := exec.LookPath("rpm"); err != nil {
		return nil
	}
	out, err := exec.Command("rpm", "-qa", "--qf", rpmQueryFormat).Output()
	if err != nil {
		return nil
	}
	return parseRPM(bytes.NewReader(out))
}

// parseRPM parses the output of `rpm -qa --qf rpmQueryFormat`.
func parseRPM(r io.Reader) *rpmDB {
	db := &rpmDB{versions: map[string]string{}, byPkg: map[string][]rpmFile{}, byPath: map[string][]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), "\t", 6)
		if len(f) != 6 || !strings.HasPrefix(f[5], "/") {
			continue
		}
		flags, _ := strconv.Atoi(f[2])
		algo, _ := strconv.Atoi(f[3])
		name, p := f[0], canonicalPath(f[5])
		db.versions[name] = f[1]
		db.byPkg[name] = append(db.byPkg[name], rpmFile{path: p, config: flags&1 != 0, algo: algo, digest: f[4]})
		if l := db.byPath[p]; len(l) == 0 || l[len(l)-1] != name {
			db.byPath[p] = append(l, name)
		}
	}
	return db
}

func (db *rpmDB) owners(p string) []string   { return db.byPath[p] }
func (db *rpmDB) installed(name string) bool { _, ok := db.versions[name]; return ok }
func (db *rpmDB) version(name string) string { return db.versions[name] }

func (db *rpmDB) files(name string) ([]string, map[string]bool) {
	var files []string
	conf := map[string]bool{}
	for _, f := range db.byPkg[name] {
		files = append(files, f.path)
		if f.config && f.digest != "" {
			sum, err := digestFile(f.path, f.algo)
			conf[f.path] = err != nil || sum != f.digest
		}
	}
	return files, conf
}

func digestFile(p string, algo int) (string, error) {
	var h hash.Hash
	switch algo {
	case 1:
		h = md5.New()
	default:
		h = sha256.New()
	}
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func md5File(p string) (string, error) { return digestFile(p, 1) }
