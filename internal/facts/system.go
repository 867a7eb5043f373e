package facts

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// system fills identity, OS, kernel, CPU and memory.
func (c *Collector) system(f *Facts, warn func(string)) error {
	if _, err := os.Stat(c.proc("self")); err != nil {
		if _, err2 := os.Stat(c.proc("1")); err2 != nil {
			return fmt.Errorf("facts: %s is not a mounted proc file system: %w", c.proc(), err)
		}
	}
	f.Hostname = readLine(c.proc("sys", "kernel", "hostname"))
	f.Kernel = readLine(c.proc("sys", "kernel", "osrelease"))
	f.KernelVersion = readLine(c.proc("sys", "kernel", "version"))
	if c.Uname != nil {
		f.Arch = c.Uname()
	} else {
		var u unix.Utsname
		if err := unix.Uname(&u); err == nil {
			f.Arch = unix.ByteSliceToString(u.Machine[:])
			if f.Hostname == "" {
				f.Hostname = unix.ByteSliceToString(u.Nodename[:])
			}
		}
	}
	osr, err := c.osRelease()
	if err != nil {
		warn(err.Error())
	}
	f.OS = osr
	if data, err := os.ReadFile(c.proc("cpuinfo")); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if k, _, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "processor" {
				f.CPUs++
			}
		}
	} else {
		warn(fmt.Sprintf("cpus: %v", err))
	}
	if m, err := readMeminfo(c.proc("meminfo")); err == nil {
		f.MemTotal, f.MemAvailable = m["MemTotal"], m["MemAvailable"]
	} else {
		warn(fmt.Sprintf("memory: %v", err))
	}
	return nil
}

// osRelease reads /etc/os-release, falling back to /usr/lib/os-release.
func (c *Collector) osRelease() (OSRelease, error) {
	var r OSRelease
	data, err := os.ReadFile(c.root("etc", "os-release"))
	if err != nil {
		var err2 error
		if data, err2 = os.ReadFile(c.root("usr", "lib", "os-release")); err2 != nil {
			return r, fmt.Errorf("os release: %w", err)
		}
	}
	kv := parseOSRelease(data)
	r = OSRelease{ID: kv["ID"], IDLike: kv["ID_LIKE"], Name: kv["NAME"], PrettyName: kv["PRETTY_NAME"],
		VersionID: kv["VERSION_ID"], VersionCodename: kv["VERSION_CODENAME"]}
	if r.PrettyName == "" {
		r.PrettyName = strings.TrimSpace(r.Name + " " + kv["VERSION"])
	}
	return r, nil
}

// parseOSRelease parses KEY=value lines with shell-style quoting.
func parseOSRelease(data []byte) map[string]string {
	kv := map[string]string{}
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		k, v, ok := strings.Cut(l, "=")
		if !ok || strings.HasPrefix(l, "#") {
			continue
		}
		if n := len(v); n >= 2 && (v[0] == '"' && v[n-1] == '"' || v[0] == '\'' && v[n-1] == '\'') {
			q := v[0]
			v = v[1 : n-1]
			if q == '"' {
				r := strings.NewReplacer(`\"`, `"`, `\\`, `\`, `\$`, `$`, "\\`", "`")
				v = r.Replace(v)
			}
		}
		kv[k] = v
	}
	return kv
}

// readMeminfo returns /proc/meminfo values in bytes.
func readMeminfo(path string) (map[string]uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		n, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			continue
		}
		if len(fields) > 1 && fields[1] == "kB" {
			n *= 1024
		}
		m[k] = n
	}
	return m, nil
}

// pseudoFS are file systems without disk space worth reporting.
var pseudoFS = map[string]bool{
	"proc": true, "sysfs": true, "devtmpfs": true, "devpts": true, "cgroup": true, "cgroup2": true,
	"securityfs": true, "pstore": true, "bpf": true, "debugfs": true, "tracefs": true, "mqueue": true,
	"hugetlbfs": true, "configfs": true, "fusectl": true, "binfmt_misc": true, "autofs": true,
	"rpc_pipefs": true, "nsfs": true, "efivarfs": true, "selinuxfs": true, "ramfs": true,
	"nfsd": true, "fuse.gvfsd-fuse": true, "fuse.portal": true,
}

// mounts lists real file systems from /proc/self/mounts with their space.
// tmpfs counts only outside /dev, /proc, /sys and /run. A mount point
// listed twice is reported once (the last mount wins).
func (c *Collector) mounts(warn func(string)) []Mount {
	data, err := os.ReadFile(c.proc("self", "mounts"))
	if err != nil {
		warn(fmt.Sprintf("mounts: %v", err))
		return nil
	}
	statfs := c.Statfs
	if statfs == nil {
		statfs = statfsBytes
	}
	var out []Mount
	index := map[string]int{}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 {
			continue
		}
		dev, mp, typ := unescapeMount(f[0]), unescapeMount(f[1]), f[2]
		if pseudoFS[typ] || typ == "tmpfs" && underAny(mp, "/dev", "/proc", "/sys", "/run") {
			continue
		}
		size, free, avail, err := statfs(mp)
		if err != nil || size == 0 {
			continue
		}
		m := Mount{Path: mp, Device: dev, FSType: typ, Size: size, Free: free, Avail: avail}
		if i, ok := index[mp]; ok {
			out[i] = m
			continue
		}
		index[mp] = len(out)
		out = append(out, m)
	}
	return out
}

func statfsBytes(path string) (size, free, avail uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, 0, 0, err
	}
	bs := uint64(st.Frsize)
	if bs == 0 {
		bs = uint64(st.Bsize)
	}
	return st.Blocks * bs, st.Bfree * bs, st.Bavail * bs, nil
}

func underAny(p string, dirs ...string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// unescapeMount decodes the octal escapes (\040 etc.) of /proc/self/mounts.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// packageManager names the package database present: dpkg or rpm.
func (c *Collector) packageManager() string {
	if exists(c.root("var", "lib", "dpkg", "status")) {
		return "dpkg"
	}
	for _, p := range []string{"var/lib/rpm", "usr/lib/sysimage/rpm"} {
		if exists(c.root(p)) {
			return "rpm"
		}
	}
	return ""
}

// initSystem reports the init system and the name of PID 1.
func (c *Collector) initSystem() (name, pid1 string) {
	pid1 = readLine(c.proc("1", "comm"))
	exe, _ := os.Readlink(c.proc("1", "exe"))
	switch {
	case exists(c.root("run", "systemd", "system")) || pid1 == "systemd":
		return "systemd", pid1
	case exists(c.root("run", "openrc")) || exists(c.root("sbin", "openrc")) && pid1 == "init":
		return "openrc", pid1
	case pid1 == "init" && (filepath.Base(exe) == "init" || exe == "") && exists(c.root("etc", "inittab")):
		return "sysvinit", pid1
	}
	return pid1, pid1
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func readLine(p string) string {
	data, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}
