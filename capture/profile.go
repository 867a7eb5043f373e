package capture

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// profile is what capture knows about one kind of service beyond /proc
// and the package database: its process names, packages, configuration
// trees, how to start and stop it in the foreground, and where its
// configuration says its data lives.
type profile struct {
	name     string
	procs    []string // process (comm or executable) names
	packages []string // packages that make up the service, when installed
	config   func(s *service) []string
	start    func(s *service) []string
	stop     func(s *service) []string
	data     func(c *collector, s *service)
}

var profiles = map[string]*profile{
	"nginx": {name: "nginx", procs: []string{"nginx"},
		packages: []string{"nginx", "nginx-core", "nginx-common", "nginx-light", "nginx-full", "nginx-extras"},
		config:   func(s *service) []string { return []string{nginxPrefix(s)} },
		start: func(s *service) []string {
			argv := []string{exeOr(s.main, "/usr/sbin/nginx")}
			if c := s.main.arg("-c"); c != "" {
				argv = append(argv, "-c", c)
			}
			return append(argv, "-g", "daemon off;")
		},
		stop: func(s *service) []string { return []string{exeOr(s.main, "/usr/sbin/nginx"), "-s", "quit"} },
		data: nginxData},
	"bind9": {name: "bind9", procs: []string{"named"},
		packages: []string{"bind9"},
		config:   func(s *service) []string { return uniq([]string{"/etc/bind", filepath.Dir(namedConf(s))}) },
		start: func(s *service) []string {
			argv := []string{exeOr(s.main, "/usr/sbin/named"), "-g", "-c", namedConf(s)}
			if u := s.main.arg("-u"); u != "" {
				argv = append(argv, "-u", u)
			}
			return argv
		},
		stop: func(s *service) []string { return nil },
		data: bindData},
	"postfix": {name: "postfix", procs: []string{"master"},
		packages: []string{"postfix"},
		config:   func(s *service) []string { return []string{postfixConfDir(s)} },
		start: func(s *service) []string {
			if d := postfixConfDir(s); d != "/etc/postfix" {
				return []string{"/usr/sbin/postfix", "-c", d, "start-fg"}
			}
			return []string{"/usr/sbin/postfix", "start-fg"}
		},
		stop: func(s *service) []string {
			if d := postfixConfDir(s); d != "/etc/postfix" {
				return []string{"/usr/sbin/postfix", "-c", d, "stop"}
			}
			return []string{"/usr/sbin/postfix", "stop"}
		},
		data: postfixData},
	"apache2": {name: "apache2", procs: []string{"apache2"},
		packages: []string{"apache2", "apache2-bin", "apache2-data"},
		config: func(s *service) []string {
			if d := apacheConfDir(s); d != "/etc/apache2" {
				return []string{"/etc/apache2", d}
			}
			return []string{"/etc/apache2"}
		},
		start: apacheStart,
		stop:  func(s *service) []string { return nil },
		data:  apacheData},
}

var aliases = map[string]string{"named": "bind9", "bind": "bind9", "master": "postfix", "httpd": "apache2"}

// profileFor returns the profile for a service or process name, or the
// generic one.
func profileFor(name string) *profile {
	if a, ok := aliases[name]; ok {
		name = a
	}
	if p, ok := profiles[name]; ok {
		return p
	}
	return &profile{name: "generic",
		config: func(s *service) []string {
			var out []string
			for _, n := range []string{s.name, s.main.Comm} {
				if n != "" {
					out = append(out, filepath.Join("/etc", filepath.Base(n)))
				}
			}
			return uniq(out)
		},
		start: func(s *service) []string { return append([]string{exeOr(s.main, "")}, tail(s.main.Cmdline)...) },
		stop:  func(s *service) []string { return nil },
		data:  genericData}
}

func exeOr(p *Process, def string) string {
	if p.Exe != "" {
		return p.Exe
	}
	if len(p.Cmdline) > 0 && strings.HasPrefix(p.Cmdline[0], "/") {
		return p.Cmdline[0]
	}
	return def
}

func tail(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s[1:]
}

func uniq(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if x != "" && !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// genericData adds the open regular files under data-like trees and the
// working directory.
func genericData(c *collector, s *service) {
	for _, p := range s.procs {
		for _, f := range p.Files {
			for _, pre := range []string{"/var/lib/", "/srv/", "/var/www/", "/var/spool/", "/var/cache/"} {
				if strings.HasPrefix(f, pre) {
					c.addTree(f, "data:open")
				}
			}
		}
	}
	if cwd := s.main.Cwd; cwd != "" && cwd != "/" {
		c.add(cwd, "cwd")
	}
	for _, a := range tail(s.main.Cmdline) { // e.g. -c /etc/foo/foo.conf
		if _, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(a, "-") {
			a = v
		}
		if fi, err := os.Stat(absFrom(s.main.Cwd, a)); err == nil && fi.Mode().IsRegular() && (filepath.IsAbs(a) || strings.Contains(a, "/")) {
			c.add(absFrom(s.main.Cwd, a), "config:cmdline")
		}
	}
}

// --- nginx ---

func nginxPrefix(s *service) string {
	if c := s.main.arg("-c"); c != "" {
		return filepath.Dir(c)
	}
	return "/etc/nginx"
}

func nginxData(c *collector, s *service) {
	conf := s.main.arg("-c")
	if conf == "" {
		conf = "/etc/nginx/nginx.conf"
	}
	ds := readNginx(conf, filepath.Dir(conf), 0)
	user := "www-data"
	for _, d := range ds {
		switch d.name {
		case "root", "alias":
			c.addTree(d.arg(0), "data:"+d.name)
		case "user":
			user = d.arg(0)
		case "pid":
			c.runtimeDir(filepath.Dir(d.arg(0)), "runtime:pid")
		case "access_log", "error_log":
			c.logFile(d.arg(0))
		case "ssl_certificate", "ssl_certificate_key", "ssl_trusted_certificate", "ssl_dhparam", "auth_basic_user_file":
			c.add(d.arg(0), "config:"+d.name)
		case "load_module":
			c.add(nginxRel(d.arg(0), "/usr/share/nginx"), "config:load_module")
		}
	}
	c.user(user)
	c.runtimeDir("/run", "runtime")
	c.addTree("/var/lib/nginx", "state")
	c.runtimeDir("/var/log/nginx", "runtime:log")
}

func nginxRel(p, prefix string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(prefix, p)
}

type directive struct {
	name string
	args []string
}

func (d directive) arg(i int) string {
	if i < len(d.args) {
		return d.args[i]
	}
	return ""
}

// readNginx parses an nginx configuration file, following include globs,
// into a flat list of directives.
func readNginx(file, prefix string, depth int) []directive {
	b, err := os.ReadFile(file)
	if err != nil || depth > 10 {
		return nil
	}
	var out []directive
	for _, d := range parseNginx(string(b)) {
		if d.name == "include" {
			ms, _ := filepath.Glob(nginxRel(d.arg(0), prefix))
			sort.Strings(ms)
			for _, m := range ms {
				out = append(out, readNginx(m, prefix, depth+1)...)
			}
			continue
		}
		out = append(out, d)
	}
	return out
}

// parseNginx splits nginx configuration text into directives (block
// openers included, with their arguments).
func parseNginx(s string) []directive {
	var out []directive
	var cur []string
	for _, t := range tokenize(s, "#", "{};") {
		switch t {
		case ";", "{":
			if len(cur) > 0 {
				out = append(out, directive{name: cur[0], args: cur[1:]})
			}
			cur = nil
		case "}":
			cur = nil
		default:
			cur = append(cur, t)
		}
	}
	return out
}

// tokenize splits configuration text into words, quoted strings (quotes
// removed) and the single-character punctuation in punct, dropping
// comments starting with any of the comment prefixes (space separated).
func tokenize(s, comments, punct string) []string {
	var out []string
	cs := strings.Fields(comments)
	for i := 0; i < len(s); {
		ch := s[i]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r':
			i++
		case hasComment(s[i:], cs):
			if strings.HasPrefix(s[i:], "/*") {
				end := strings.Index(s[i+2:], "*/")
				if end < 0 {
					return out
				}
				i += end + 4
				continue
			}
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case ch == '"' || ch == '\'':
			j := i + 1
			var b strings.Builder
			for j < len(s) && s[j] != ch {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
				j++
			}
			out = append(out, b.String())
			i = j + 1
		case strings.IndexByte(punct, ch) >= 0:
			out = append(out, string(ch))
			i++
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\r\n\"'"+punct, rune(s[j])) && !hasComment(s[j:], cs) {
				j++
			}
			out = append(out, s[i:j])
			i = j
		}
	}
	return out
}

func hasComment(s string, cs []string) bool {
	for _, c := range cs {
		if strings.HasPrefix(s, c) {
			return true
		}
	}
	return false
}

// --- apache2 ---

// apacheConfDir is the running Apache's server root: -d DIR, or
// APACHE_CONFDIR as Debian's apache2ctl sets it, or /etc/apache2.
func apacheConfDir(s *service) string {
	if d := s.main.arg("-d"); d != "" {
		return filepath.Clean(d)
	}
	if d := s.main.env("APACHE_CONFDIR"); d != "" {
		return filepath.Clean(d)
	}
	return "/etc/apache2"
}

// apacheStart starts Apache in the foreground the way Debian does: through
// apache2ctl, which reads the server root's envvars (APACHE_RUN_USER,
// APACHE_RUN_DIR, … that apache2.conf needs) and creates the run and lock
// directories. apache2 alone, without them, refuses its configuration.
func apacheStart(s *service) []string {
	exe := exeOr(s.main, "/usr/sbin/apache2")
	ctl := filepath.Join(filepath.Dir(exe), "apache2ctl")
	if _, err := os.Stat(ctl); err != nil {
		return []string{exe, "-d", apacheConfDir(s), "-DFOREGROUND"}
	}
	argv := []string{ctl, "-DFOREGROUND"}
	if d := apacheConfDir(s); d != "/etc/apache2" {
		// apache2ctl takes the server root (and its envvars) from the
		// environment.
		argv = append([]string{"/usr/bin/env", "APACHE_CONFDIR=" + d}, argv...)
	}
	return argv
}

func apacheData(c *collector, s *service) {
	c.user("www-data")
	if u := s.main.env("APACHE_RUN_USER"); u != "" && u != "www-data" {
		c.user(u)
	}
	filepath.WalkDir(apacheConfDir(s), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".conf") {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) >= 2 && strings.EqualFold(f[0], "DocumentRoot") {
				c.addTree(strings.Trim(f[1], `"`), "data:docroot")
			}
		}
		return nil
	})
	c.runtimeDir("/run/apache2", "runtime")
	c.runtimeDir("/var/log/apache2", "runtime:log")
	c.runtimeDir("/var/lock/apache2", "runtime")
}
