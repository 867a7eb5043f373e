package proxy

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// DropPrivileges applies RootJail, Group and User once the sockets are
// open, as Pound does. It does nothing for a process that is not root.
func DropPrivileges(cfg *Config) error {
	if os.Geteuid() != 0 {
		return nil
	}
	uid, gid := -1, -1
	if cfg.User != "" {
		u, err := user.Lookup(cfg.User)
		if err != nil {
			return fmt.Errorf("user %s: %w", cfg.User, err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	if cfg.Group != "" {
		g, err := user.LookupGroup(cfg.Group)
		if err != nil {
			return fmt.Errorf("group %s: %w", cfg.Group, err)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	if cfg.RootJail != "" {
		if err := syscall.Chroot(cfg.RootJail); err != nil {
			return fmt.Errorf("chroot %s: %w", cfg.RootJail, err)
		}
		if err := os.Chdir("/"); err != nil {
			return fmt.Errorf("chroot %s: %w", cfg.RootJail, err)
		}
	}
	if gid >= 0 {
		if err := syscall.Setgroups([]int{gid}); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
		if err := syscall.Setgid(gid); err != nil {
			return fmt.Errorf("setgid %d: %w", gid, err)
		}
	}
	if uid >= 0 {
		if err := syscall.Setuid(uid); err != nil {
			return fmt.Errorf("setuid %d: %w", uid, err)
		}
	}
	return nil
}
