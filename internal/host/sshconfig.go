package host

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kevinburke/ssh_config"
)

// target is where and as whom to connect, after applying ssh_config to a
// parsed spec. The spec wins over ssh_config, ssh_config over defaults.
type target struct {
	Alias          string   // the host as written in the spec (ssh_config Host matching)
	HostName       string   // what is dialled
	Port           int      // 22 unless set
	User           string   // login name
	IdentityFiles  []string // key files from ssh_config (existing or not)
	IdentitiesOnly bool     // IdentitiesOnly yes: no ssh-agent keys beyond the files
	ProxyJump      []string // jump hosts, first is dialled first
	KnownHosts     []string // UserKnownHostsFile entries
	HostKeyAlias   string   // name looked up in known_hosts instead of HostName
	AcceptNew      bool     // StrictHostKeyChecking accept-new (or no/off): trust unknown keys
}

// sshConfig is the ssh_config files in precedence order (first match wins).
type sshConfig struct {
	files []*ssh_config.Config
}

// loadSSHConfig reads path, or ~/.ssh/config plus /etc/ssh/ssh_config when
// path is empty. "none" reads nothing. A missing default file is fine; a
// missing explicit file is an error.
func loadSSHConfig(path string) (*sshConfig, error) {
	c := &sshConfig{}
	if path == "none" {
		return c, nil
	}
	paths := []string{path}
	explicit := path != ""
	if !explicit {
		paths = []string{filepath.Join(homeDir(), ".ssh", "config"), "/etc/ssh/ssh_config"}
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) && !explicit {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read ssh config: %w", err)
		}
		cfg, err := ssh_config.DecodeBytes(data)
		if err != nil {
			return nil, fmt.Errorf("parse ssh config %s: %w", p, err)
		}
		c.files = append(c.files, cfg)
	}
	return c, nil
}

func (c *sshConfig) get(alias, key string) string {
	for _, f := range c.files {
		if v, err := f.Get(alias, key); err == nil && v != "" {
			return v
		}
	}
	return ""
}

func (c *sshConfig) getAll(alias, key string) []string {
	var all []string
	for _, f := range c.files {
		v, _ := f.GetAll(alias, key)
		all = append(all, v...)
	}
	return all
}

// resolve applies ssh_config to s.
func (c *sshConfig) resolve(s Spec) (target, error) {
	t := target{Alias: s.Host, HostName: s.Host, Port: 22, User: s.User}
	if hn := c.get(s.Host, "HostName"); hn != "" {
		t.HostName = expandTokens(hn, s.Host, "", 0)
	}
	if s.Port != 0 {
		t.Port = s.Port
	} else if p := c.get(s.Host, "Port"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return t, fmt.Errorf("ssh config: host %s: bad Port %q", s.Host, p)
		}
		t.Port = n
	}
	if t.User == "" {
		t.User = c.get(s.Host, "User")
	}
	if t.User == "" {
		t.User = currentUser()
	}
	for _, f := range c.getAll(s.Host, "IdentityFile") {
		t.IdentityFiles = append(t.IdentityFiles, expandTokens(f, t.HostName, t.User, t.Port))
	}
	t.IdentitiesOnly = strings.EqualFold(c.get(s.Host, "IdentitiesOnly"), "yes")
	if pj := c.get(s.Host, "ProxyJump"); pj != "" && !strings.EqualFold(pj, "none") {
		for _, j := range strings.Split(pj, ",") {
			if j = strings.TrimSpace(j); j != "" {
				t.ProxyJump = append(t.ProxyJump, j)
			}
		}
	}
	for _, kh := range c.getAll(s.Host, "UserKnownHostsFile") {
		for _, f := range strings.Fields(kh) {
			if f != "none" {
				t.KnownHosts = append(t.KnownHosts, expandTokens(f, t.HostName, t.User, t.Port))
			}
		}
	}
	t.HostKeyAlias = c.get(s.Host, "HostKeyAlias")
	switch strings.ToLower(c.get(s.Host, "StrictHostKeyChecking")) {
	case "accept-new", "no", "off":
		t.AcceptNew = true
	}
	return t, nil
}

// expandTokens expands a leading ~ and the ssh_config tokens %h %p %r %u
// %d %%.
func expandTokens(s, host, user string, port int) string {
	if s == "~" || strings.HasPrefix(s, "~/") {
		s = homeDir() + s[1:]
	}
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 'h':
			b.WriteString(host)
		case 'p':
			b.WriteString(strconv.Itoa(port))
		case 'r':
			b.WriteString(user)
		case 'u':
			b.WriteString(currentUser())
		case 'd':
			b.WriteString(homeDir())
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func homeDir() string {
	if h := os.Getenv("HOME"); h != "" {
		return h
	}
	if u, err := user.Current(); err == nil {
		return u.HomeDir
	}
	return "/"
}

func currentUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "root"
}
