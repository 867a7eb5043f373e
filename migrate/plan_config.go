package migrate

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/migrate-tool/migrate/internal/agent"
)

// MethodInspect is the agent method that reads a service's configuration
// on the host it runs on and reports what matters once a proxy forwards
// to it: whether it can learn the client's address (real-IP module,
// PROXY protocol, X-Forwarded-For logging), its IP-based access rules and
// its access logs.
const MethodInspect = "plan.inspect"

// InspectParams are the parameters of MethodInspect.
type InspectParams struct {
	Service string `json:"service"`
	// Root is prepended to every path read (tests); default "/".
	Root string `json:"root,omitempty"`
}

// ConfigScan is what MethodInspect found.
type ConfigScan struct {
	Service string   `json:"service"`
	Kind    string   `json:"kind"` // "nginx", "apache", "postfix" or "" (not inspected)
	Files   []string `json:"files,omitempty"`
	// AccessLogs are the access logs the configuration names.
	AccessLogs []string `json:"access_logs,omitempty"`
	// RealIP is "file:line: directive" for each real-IP directive.
	RealIP []string `json:"real_ip,omitempty"`
	// ProxyProtocol lists listeners that accept the PROXY protocol.
	ProxyProtocol []string `json:"proxy_protocol,omitempty"`
	// ForwardedForLog lists log formats that record X-Forwarded-For.
	ForwardedForLog []string `json:"forwarded_for_log,omitempty"`
	// AccessRules are IP-based access rules, "file:line: directive".
	AccessRules []string `json:"access_rules,omitempty"`
	Note        string   `json:"note,omitempty"`
}

func init() {
	agent.Register(MethodInspect, func(ctx context.Context, c *agent.Call) (any, error) {
		var p InspectParams
		if err := c.Decode(&p); err != nil {
			return nil, err
		}
		return InspectConfig(p), nil
	})
}

// Config files of the services inspected.
var configRoots = map[string][]string{
	"nginx":   {"/etc/nginx/nginx.conf"},
	"apache":  {"/etc/apache2/apache2.conf", "/etc/httpd/conf/httpd.conf"},
	"postfix": {"/etc/postfix/main.cf"},
}

// ServiceKind maps a service name to the configuration dialect inspected.
func ServiceKind(service string) string {
	switch s := strings.ToLower(service); {
	case strings.Contains(s, "nginx"):
		return "nginx"
	case strings.Contains(s, "apache"), s == "httpd":
		return "apache"
	case strings.Contains(s, "postfix"), s == "smtp", s == "mail":
		return "postfix"
	case strings.Contains(s, "bind"), s == "named":
		return "bind"
	}
	return ""
}

// DefaultAccessLog is the access log a service writes by default.
func DefaultAccessLog(service string) string {
	switch ServiceKind(service) {
	case "nginx":
		return "/var/log/nginx/access.log"
	case "apache":
		return "/var/log/apache2/access.log"
	}
	return ""
}

// InspectConfig scans the service's configuration below p.Root.
func InspectConfig(p InspectParams) *ConfigScan {
	root := p.Root
	if root == "" {
		root = "/"
	}
	cs := &ConfigScan{Service: p.Service, Kind: ServiceKind(p.Service)}
	var first string
	for _, f := range configRoots[cs.Kind] {
		if _, err := os.Stat(filepath.Join(root, f)); err == nil {
			first = f
			break
		}
	}
	if first == "" {
		cs.Note = "no configuration inspected for service " + p.Service
		if cs.Kind != "" {
			cs.Note = fmt.Sprintf("%s configuration not found (%s)", cs.Kind, strings.Join(configRoots[cs.Kind], ", "))
		}
		cs.Kind = ""
		return cs
	}
	sc := &scanner{root: root, cs: cs, seen: map[string]bool{}}
	sc.file(first, 0)
	if cs.Kind == "nginx" && len(cs.AccessLogs) == 0 {
		cs.AccessLogs = []string{"/var/log/nginx/access.log"}
	}
	return cs
}

type scanner struct {
	root string
	cs   *ConfigScan
	seen map[string]bool
}

// stmt is one configuration statement with where it starts.
type stmt struct {
	words []string
	line  int
}

var (
	commentRE = regexp.MustCompile(`(^|\s)#.*$`)
	apacheIP  = regexp.MustCompile(`(?i)^(require\s+(not\s+)?ip|allow\s+from|deny\s+from)\b`)
)

func (s *scanner) file(path string, depth int) {
	if depth > 8 || s.seen[path] {
		return
	}
	s.seen[path] = true
	f, err := os.Open(filepath.Join(s.root, path))
	if err != nil {
		return
	}
	defer f.Close()
	s.cs.Files = append(s.cs.Files, path)
	var stmts []stmt
	switch s.cs.Kind {
	case "nginx":
		stmts = nginxStatements(f)
	default:
		stmts = lineStatements(f)
	}
	for _, st := range stmts {
		s.statement(path, st, depth)
	}
}

// nginxStatements splits an nginx file into statements at ';', '{' and '}'.
func nginxStatements(f io.Reader) []stmt {
	var out []stmt
	var cur stmt
	br := bufio.NewScanner(f)
	br.Buffer(make([]byte, 64<<10), 1<<20)
	for ln := 1; br.Scan(); ln++ {
		line := commentRE.ReplaceAllString(br.Text(), "")
		for _, tok := range splitNginx(line) {
			switch tok {
			case ";", "{", "}":
				if len(cur.words) > 0 {
					out = append(out, cur)
				}
				cur = stmt{}
			default:
				if len(cur.words) == 0 {
					cur.line = ln
				}
				cur.words = append(cur.words, tok)
			}
		}
	}
	return out
}

func splitNginx(line string) []string {
	var out []string
	var b strings.Builder
	var quote rune
	flush := func() {
		if b.Len() > 0 {
			out = append(out, b.String())
			b.Reset()
		}
	}
	for _, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				b.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote = r
		case r == ';' || r == '{' || r == '}':
			flush()
			out = append(out, string(r))
		case r == ' ' || r == '\t':
			flush()
		default:
			b.WriteRune(r)
		}
	}
	flush()
	return out
}

// lineStatements is one statement per non-empty line (Apache, main.cf).
func lineStatements(f io.Reader) []stmt {
	var out []stmt
	br := bufio.NewScanner(f)
	br.Buffer(make([]byte, 64<<10), 1<<20)
	for ln := 1; br.Scan(); ln++ {
		line := strings.TrimSpace(commentRE.ReplaceAllString(br.Text(), ""))
		line = strings.Trim(line, "<>")
		if w := strings.Fields(line); len(w) > 0 {
			out = append(out, stmt{words: w, line: ln})
		}
	}
	return out
}

func (s *scanner) statement(path string, st stmt, depth int) {
	where := fmt.Sprintf("%s:%d: %s", path, st.line, strings.Join(st.words, " "))
	d := strings.ToLower(st.words[0])
	args := st.words[1:]
	cs := s.cs
	switch cs.Kind {
	case "nginx":
		switch d {
		case "include":
			s.include(path, args, depth)
		case "set_real_ip_from", "real_ip_header":
			cs.RealIP = append(cs.RealIP, where)
		case "listen":
			if slices.Contains(args, "proxy_protocol") {
				cs.ProxyProtocol = append(cs.ProxyProtocol, where)
			}
		case "log_format":
			if strings.Contains(where, "$http_x_forwarded_for") || strings.Contains(where, "$proxy_protocol_addr") {
				cs.ForwardedForLog = append(cs.ForwardedForLog, where)
			}
		case "access_log":
			if len(args) > 0 && args[0] != "off" && !strings.HasPrefix(args[0], "syslog:") {
				cs.AccessLogs = appendUniq(cs.AccessLogs, args[0])
			}
		case "allow", "deny":
			if len(args) > 0 && args[0] != "all" {
				cs.AccessRules = append(cs.AccessRules, where)
			}
		case "geo", "if":
			if strings.Contains(where, "$remote_addr") || strings.Contains(where, "$binary_remote_addr") {
				cs.AccessRules = append(cs.AccessRules, where)
			}
		}
	case "apache":
		switch {
		case d == "include" || d == "includeoptional":
			s.include(path, args, depth)
		case d == "remoteipheader" || d == "remoteiptrustedproxy" || d == "remoteipinternalproxy":
			cs.RealIP = append(cs.RealIP, where)
		case d == "logformat" && strings.Contains(strings.ToLower(where), "x-forwarded-for"):
			cs.ForwardedForLog = append(cs.ForwardedForLog, where)
		case d == "customlog" && len(args) > 0:
			cs.AccessLogs = appendUniq(cs.AccessLogs, strings.ReplaceAll(args[0], "${APACHE_LOG_DIR}", "/var/log/apache2"))
		case apacheIP.MatchString(strings.Join(st.words, " ")) && !strings.EqualFold(strings.Join(args, " "), "from all"):
			cs.AccessRules = append(cs.AccessRules, where)
		}
	case "postfix":
		line := strings.Join(st.words, " ")
		switch {
		case strings.HasPrefix(line, "mynetworks"), strings.Contains(line, "check_client_access"):
			cs.AccessRules = append(cs.AccessRules, where)
		case strings.Contains(line, "upstream_proxy_protocol"):
			cs.ProxyProtocol = append(cs.ProxyProtocol, where)
		}
	}
}

// include follows an include glob relative to the including file's
// directory (nginx) or the server root.
func (s *scanner) include(from string, args []string, depth int) {
	for _, pat := range args {
		if !filepath.IsAbs(pat) {
			pat = filepath.Join(filepath.Dir(from), pat)
		}
		matches, _ := filepath.Glob(filepath.Join(s.root, pat))
		if fi, err := os.Stat(filepath.Join(s.root, pat)); err == nil && fi.IsDir() {
			matches, _ = filepath.Glob(filepath.Join(s.root, pat, "*"))
		}
		slices.Sort(matches)
		for _, m := range matches {
			rel, err := filepath.Rel(s.root, m)
			if err != nil {
				continue
			}
			s.file("/"+strings.TrimPrefix(rel, "/"), depth+1)
		}
	}
}

func appendUniq(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}
