package facts

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// mergedDirs are the top-level directories that usrmerge turned into
// symlinks into /usr: a package may list /sbin/x while the process runs
// /usr/sbin/x, or the other way round.
var mergedDirs = []string{"bin", "sbin", "lib", "lib32", "lib64", "libx32"}

// pathVariants returns p and its usrmerge twin, if any.
func pathVariants(p string) []string {
	out := []string{p}
	for _, d := range mergedDirs {
		if rest, ok := strings.CutPrefix(p, "/usr/"+d+"/"); ok {
			return append(out, "/"+d+"/"+rest)
		}
		if rest, ok := strings.CutPrefix(p, "/"+d+"/"); ok {
			return append(out, "/usr/"+d+"/"+rest)
		}
	}
	return out
}

// owners fills Socket.Package for every socket with an executable.
func (c *Collector) owners(ctx context.Context, pm string, socks []Socket, warn func(string)) {
	exes := map[string]bool{}
	for _, s := range socks {
		if s.Exe != "" {
			exes[strings.TrimSuffix(s.Exe, " (deleted)")] = true
		}
	}
	if len(exes) == 0 {
		return
	}
	var found map[string]string
	switch pm {
	case "dpkg":
		var err error
		found, err = c.dpkgOwners(exes)
		if err != nil {
			warn(fmt.Sprintf("packages: %v", err))
		}
	case "rpm":
		found = c.rpmOwners(ctx, exes, warn)
	default:
		return
	}
	for i := range socks {
		if socks[i].Exe != "" {
			socks[i].Package = found[strings.TrimSuffix(socks[i].Exe, " (deleted)")]
		}
	}
}

// dpkgOwners finds the packages owning paths by reading
// /var/lib/dpkg/info/*.list directly. The result maps each path (as
// given) to its package name, without the ":arch" qualifier.
func (c *Collector) dpkgOwners(paths map[string]bool) (map[string]string, error) {
	want := map[string]string{} // "\n" + variant + "\n" -> original path
	for p := range paths {
		for _, v := range pathVariants(p) {
			want["\n"+v+"\n"] = p
		}
	}
	lists, err := filepath.Glob(c.root("var", "lib", "dpkg", "info", "*.list"))
	if err != nil {
		return nil, err
	}
	found := map[string]string{}
	for _, l := range lists {
		data, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		data = append(append([]byte{'\n'}, data...), '\n')
		pkg := strings.TrimSuffix(filepath.Base(l), ".list")
		pkg, _, _ = strings.Cut(pkg, ":")
		for needle, p := range want {
			if _, done := found[p]; !done && bytes.Contains(data, []byte(needle)) {
				found[p] = pkg
			}
		}
		if len(found) == len(paths) {
			break
		}
	}
	return found, nil
}

// rpmOwners asks `rpm -qf` (reading the rpm database itself needs its
// sqlite or Berkeley DB format, which the static binary does not carry).
func (c *Collector) rpmOwners(ctx context.Context, paths map[string]bool, warn func(string)) map[string]string {
	query := c.RPMOwner
	if query == nil {
		if _, err := exec.LookPath("rpm"); err != nil {
			warn("packages: rpm database present but no rpm command to query it")
			return nil
		}
		query = rpmQuery
	}
	found := map[string]string{}
	for p := range paths {
		for _, v := range pathVariants(p) {
			if name, err := query(ctx, v); err == nil && name != "" {
				found[p] = name
				break
			}
		}
	}
	return found
}

func rpmQuery(ctx context.Context, path string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rpm", "-qf", "--queryformat", "%{NAME}\n", "--", path).Output()
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0]), nil
}
