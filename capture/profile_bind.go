package capture

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// --- BIND 9 ---

func namedConf(s *service) string {
	if c := s.main.arg("-c"); c != "" {
		return absFrom(s.main.Cwd, c)
	}
	return "/etc/bind/named.conf"
}

func absFrom(dir, p string) string {
	if filepath.IsAbs(p) || dir == "" {
		return filepath.Clean(p)
	}
	return filepath.Join(dir, p)
}

// namedStmt is one "keyword "string";" pair found in named.conf.
type namedStmt struct{ key, val string }

// readNamed collects quoted-string statements from named.conf and its
// includes (which are relative to the server's working directory).
func readNamed(file, cwd string, depth int) []namedStmt {
	b, err := os.ReadFile(file)
	if err != nil || depth > 10 {
		return nil
	}
	toks := tokenize(string(b), "# // /*", "{};")
	var out []namedStmt
	for i := 0; i+1 < len(toks); i++ {
		k, v := toks[i], toks[i+1]
		if v == ";" || v == "{" || v == "}" {
			continue
		}
		switch k {
		case "include":
			ms, _ := filepath.Glob(absFrom(cwd, v))
			sort.Strings(ms)
			out = append(out, namedStmt{k, v})
			for _, m := range ms {
				out = append(out, readNamed(m, cwd, depth+1)...)
			}
		case "directory", "file", "pid-file", "session-keyfile", "key-directory", "managed-keys-directory",
			"journal", "dump-file", "statistics-file", "bindkeys-file", "secroots-file", "memstatistics-file":
			out = append(out, namedStmt{k, v})
		}
	}
	return out
}

func bindData(c *collector, s *service) {
	conf := namedConf(s)
	c.add(conf, "config:named.conf")
	stmts := readNamed(conf, s.main.Cwd, 0)
	dir := s.main.Cwd
	for _, st := range stmts {
		if st.key == "directory" {
			dir = st.val
		}
	}
	if dir == "" {
		dir = "/var/cache/bind"
	}
	c.addTree(dir, "data:directory")
	for _, st := range stmts {
		p := absFrom(dir, st.val)
		switch st.key {
		case "include":
			c.add(absFrom(s.main.Cwd, st.val), "config:include")
		case "file":
			c.add(p, "data:zone")
			c.add(p+".jnl", "data:zone")
		case "journal":
			c.add(p, "data:zone")
		case "key-directory", "managed-keys-directory":
			c.addTree(p, "data:"+st.key)
		case "pid-file", "session-keyfile":
			c.runtimeDir(filepath.Dir(p), "runtime:"+st.key)
		}
	}
	if u := s.main.arg("-u"); u != "" {
		c.user(u)
	}
	c.runtimeDir("/run/named", "runtime")
	c.runtimeDir("/var/cache/bind", "runtime")
	c.addTree("/var/lib/bind", "state")
}

// --- Postfix ---

func postfixConfDir(s *service) string {
	if d := s.main.env("MAIL_CONFIG"); d != "" {
		return d
	}
	if d := s.main.arg("-c"); d != "" {
		return d
	}
	return "/etc/postfix"
}

// ReadPostfixMainCf parses a Postfix main.cf as readMainCf does; the
// cutover reads queue_directory with it.
func ReadPostfixMainCf(file string) map[string]string { return readMainCf(file) }

// readMainCf parses Postfix main.cf into name -> value (continuation
// lines joined, $name and ${name} expanded against itself and defaults).
func readMainCf(file string) map[string]string {
	vals := map[string]string{
		"queue_directory": "/var/spool/postfix", "mail_spool_directory": "/var/mail",
		"data_directory": "/var/lib/postfix", "command_directory": "/usr/sbin",
		"daemon_directory": "/usr/lib/postfix/sbin", "meta_directory": "/etc/postfix",
		"mail_owner": "postfix", "setgid_group": "postdrop", "alias_maps": "hash:/etc/aliases",
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return vals
	}
	var key string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "#") || strings.TrimSpace(l) == "" {
			continue
		}
		if (l[0] == ' ' || l[0] == '\t') && key != "" {
			vals[key] += " " + strings.TrimSpace(l)
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			key = ""
			continue
		}
		key = strings.TrimSpace(k)
		vals[key] = strings.TrimSpace(v)
	}
	vals["config_directory"] = filepath.Dir(file)
	for k, v := range vals {
		vals[k] = expandPostfix(v, vals, 0)
	}
	return vals
}

func expandPostfix(v string, vals map[string]string, depth int) string {
	if depth > 5 || !strings.Contains(v, "$") {
		return v
	}
	return expandPostfix(os.Expand(v, func(k string) string { return vals[k] }), vals, depth+1)
}

// mapFiles returns the files behind "type:/path" lookup tables.
func mapFiles(v string) []string {
	var out []string
	for _, w := range strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' }) {
		typ, p, ok := strings.Cut(w, ":")
		if !ok || !strings.HasPrefix(p, "/") {
			continue
		}
		switch typ {
		case "hash", "btree":
			out = append(out, p, p+".db")
		case "lmdb":
			out = append(out, p, p+".lmdb")
		case "cdb":
			out = append(out, p, p+".cdb")
		default:
			out = append(out, p)
		}
	}
	return out
}

func postfixData(c *collector, s *service) {
	dir := postfixConfDir(s)
	vals := readMainCf(filepath.Join(dir, "main.cf"))
	c.addTree(vals["queue_directory"], "data:queue")
	c.addTree(vals["mail_spool_directory"], "data:spool")
	c.addTree(vals["data_directory"], "data:state")
	for k, v := range vals {
		if (strings.HasSuffix(k, "_file") || strings.HasSuffix(k, "_CAfile")) && strings.HasPrefix(v, "/") {
			c.add(v, "config:"+k)
		}
		if strings.HasSuffix(k, "_CApath") && strings.HasPrefix(v, "/") {
			c.addTree(v, "config:"+k)
		}
		if strings.HasSuffix(k, "_maps") || strings.HasSuffix(k, "_checks") || k == "alias_database" {
			for _, f := range mapFiles(v) {
				c.add(f, "config:"+k)
			}
		}
	}
	c.user(vals["mail_owner"])
	c.group(vals["setgid_group"])
	c.runtimeDir(vals["queue_directory"], "runtime")
	c.runtimeDir(vals["data_directory"], "runtime")
	c.logFile("/var/log/mail.log")
}
