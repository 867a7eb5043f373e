// Package facts describes a Linux host: identity, OS, kernel, resources,
// package manager, init system and every listening socket with the
// process, executable and package behind it. Everything is read from
// /proc, /etc and the package database; only the rpm fallback runs a
// command. It registers the agent method "facts.collect", so the same
// code runs locally and on remote hosts through the agent.
package facts

import (
	"context"
	"path/filepath"
	"slices"
	"sort"

	"github.com/migrate-tool/migrate/internal/agent"
)

// Facts is what Collect reports. Sizes are bytes.
type Facts struct {
	Hostname       string    `json:"hostname"`
	OS             OSRelease `json:"os"`
	Kernel         string    `json:"kernel"`
	KernelVersion  string    `json:"kernel_version,omitempty"`
	Arch           string    `json:"arch"`
	CPUs           int       `json:"cpus"`
	MemTotal       uint64    `json:"mem_total"`
	MemAvailable   uint64    `json:"mem_available"`
	Mounts         []Mount   `json:"mounts"`
	PackageManager string    `json:"package_manager"` // "dpkg", "rpm" or ""
	Init           string    `json:"init"`            // "systemd", "sysvinit", "openrc" or PID 1's name
	InitProcess    string    `json:"init_process,omitempty"`
	Sockets        []Socket  `json:"sockets"`
	Warnings       []string  `json:"warnings,omitempty"`
}

// OSRelease holds the main fields of /etc/os-release.
type OSRelease struct {
	ID              string `json:"id"`
	IDLike          string `json:"id_like,omitempty"`
	Name            string `json:"name,omitempty"`
	PrettyName      string `json:"pretty_name"`
	VersionID       string `json:"version_id,omitempty"`
	VersionCodename string `json:"version_codename,omitempty"`
}

// Mount is one mounted file system with its space.
type Mount struct {
	Path   string `json:"path"`
	Device string `json:"device"`
	FSType string `json:"fstype"`
	Size   uint64 `json:"size"`
	Free   uint64 `json:"free"`
	Avail  uint64 `json:"avail"` // free for unprivileged users
}

// Socket is a listening TCP socket or a bound, unconnected UDP socket.
// Sockets of one executable on the same protocol, address and port
// (SO_REUSEPORT, one per thread or worker) are reported once.
type Socket struct {
	Proto   string   `json:"proto"` // tcp, tcp6, udp, udp6
	Address string   `json:"address"`
	Port    int      `json:"port"`
	UID     int      `json:"uid"`
	Inodes  []uint64 `json:"inodes"`
	PID     int      `json:"pid,omitempty"`  // lowest PID holding it (usually the master)
	PIDs    []int    `json:"pids,omitempty"` // every PID holding it
	Process string   `json:"process,omitempty"`
	Exe     string   `json:"exe,omitempty"`
	Package string   `json:"package,omitempty"`
}

// Collector reads facts below configurable roots, so tests can use
// fixture trees. The zero value reads the running system.
type Collector struct {
	Proc string // default "/proc"
	Root string // default "/": /etc, /run, /var/lib/dpkg are read below it
	// Statfs returns size, free and available bytes of the file system at
	// path (default: statfs(2)).
	Statfs func(path string) (size, free, avail uint64, err error)
	// Uname returns the kernel's machine name (default: uname(2)).
	Uname func() string
	// RPMOwner returns the rpm package owning path (default: rpm -qf).
	RPMOwner func(ctx context.Context, path string) (string, error)
}

func (c *Collector) proc(elem ...string) string {
	p := c.Proc
	if p == "" {
		p = "/proc"
	}
	return filepath.Join(append([]string{p}, elem...)...)
}

func (c *Collector) root(elem ...string) string {
	r := c.Root
	if r == "" {
		r = "/"
	}
	return filepath.Join(append([]string{r}, elem...)...)
}

// Collect gathers the facts. Parts that cannot be read are reported in
// Warnings; only a host without a readable /proc fails.
func (c *Collector) Collect(ctx context.Context) (*Facts, error) {
	f := &Facts{}
	warn := func(msg string) { f.Warnings = append(f.Warnings, msg) }
	if err := c.system(f, warn); err != nil {
		return nil, err
	}
	f.Mounts = c.mounts(warn)
	f.PackageManager = c.packageManager()
	f.Init, f.InitProcess = c.initSystem()
	socks, err := c.sockets(warn)
	if err != nil {
		return nil, err
	}
	socks = mergeSockets(socks)
	c.owners(ctx, f.PackageManager, socks, warn)
	f.Sockets = socks
	return f, nil
}

// mergeSockets folds sockets of one executable on the same protocol,
// address and port into one entry, and sorts by protocol, port, address.
func mergeSockets(socks []Socket) []Socket {
	type key struct {
		proto, addr string
		port        int
		exe         string
	}
	var out []Socket
	index := map[key]int{}
	for _, s := range socks {
		k := key{s.Proto, s.Address, s.Port, s.Exe}
		i, ok := index[k]
		if !ok || s.Exe == "" {
			index[k] = len(out)
			out = append(out, s)
			continue
		}
		m := &out[i]
		m.Inodes = append(m.Inodes, s.Inodes...)
		for _, p := range s.PIDs {
			if !slices.Contains(m.PIDs, p) {
				m.PIDs = append(m.PIDs, p)
			}
		}
		slices.Sort(m.PIDs)
		if len(m.PIDs) > 0 && m.PIDs[0] != m.PID {
			m.PID = m.PIDs[0]
			m.Process = s.Process
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Proto != b.Proto {
			return a.Proto < b.Proto
		}
		if a.Port != b.Port {
			return a.Port < b.Port
		}
		return a.Address < b.Address
	})
	return out
}

// Method is the agent method that collects the facts of the host it runs on.
const Method = "facts.collect"

func init() {
	agent.Register(Method, func(ctx context.Context, c *agent.Call) (any, error) {
		return (&Collector{}).Collect(ctx)
	})
}
