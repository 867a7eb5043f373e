package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ConfigError lists every problem found in a configuration, each as
// FILE:LINE.COL: message.
type ConfigError struct {
	Diags []Diag
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	for i, d := range e.Diags {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(d.String())
	}
	return b.String()
}

// ParseFile reads and checks a Pound configuration file. On any error it
// returns a *ConfigError naming every problem found.
func ParseFile(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, src)
}

// Parse parses src, the contents of file. Include paths are relative to
// the current directory, as in Pound.
func Parse(file string, src []byte) (*Config, error) {
	p := &parser{cfg: defaultConfig(file)}
	p.lines = lex(file, src, &p.diags)
	p.global()
	p.finish()
	if len(p.diags) > 0 {
		return p.cfg, &ConfigError{Diags: p.diags}
	}
	return p.cfg, nil
}

func defaultConfig(file string) *Config {
	return &Config{
		File:      file,
		LogLevel:  1,
		LogFormat: "regular",
		Alive:     30 * time.Second,
		TimeOut:   15 * time.Second,
		ConnTO:    5 * time.Second,
		Client:    10 * time.Second,
		Grace:     10 * time.Second,
	}
}

type parser struct {
	cfg     *Config
	lines   []line
	i       int
	diags   []Diag
	include int
}

func (p *parser) errf(pos Pos, format string, a ...any) {
	p.diags = append(p.diags, Diag{pos, fmt.Sprintf(format, a...)})
}

func (p *parser) warnf(pos Pos, format string, a ...any) {
	p.cfg.Warnings = append(p.cfg.Warnings, Diag{pos, fmt.Sprintf(format, a...)})
}

// next returns the next directive line, expanding Include.
func (p *parser) next() (line, bool) {
	for p.i < len(p.lines) {
		l := p.lines[p.i]
		p.i++
		if strings.EqualFold(l.Toks[0].Text, "include") {
			p.doInclude(l)
			continue
		}
		return l, true
	}
	return line{}, false
}

func (p *parser) doInclude(l line) {
	if len(l.Toks) != 2 {
		p.errf(l.pos(), "Include expects one file name")
		return
	}
	if p.include >= 16 {
		p.errf(l.pos(), "Include nested too deeply")
		return
	}
	name := l.Toks[1].Text
	src, err := readSmallFile(name)
	if err != nil {
		p.errf(l.Toks[1].Pos, "Include: %v", unwrapPath(err))
		return
	}
	p.include++
	inc := lex(name, src, &p.diags)
	rest := append(inc, p.lines[p.i:]...)
	p.lines = append(p.lines[:p.i:p.i], rest...)
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

// kw returns the lower-cased keyword of l.
func kw(l line) string { return strings.ToLower(l.Toks[0].Text) }

// nargs checks that l has exactly n arguments.
func (p *parser) nargs(l line, n int) bool {
	if len(l.Toks)-1 != n {
		p.errf(l.pos(), "%s expects %d argument%s, got %d", l.Toks[0].Text, n, plural(n), len(l.Toks)-1)
		return false
	}
	return true
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func (p *parser) str(l line) (string, bool) {
	if !p.nargs(l, 1) {
		return "", false
	}
	return l.Toks[1].Text, true
}

func (p *parser) num(l line, lo, hi int) (int, bool) {
	if !p.nargs(l, 1) {
		return 0, false
	}
	n, err := strconv.Atoi(l.Toks[1].Text)
	if err != nil || n < lo || n > hi {
		p.errf(l.Toks[1].Pos, "%s: %q is not a number from %d to %d", l.Toks[0].Text, l.Toks[1].Text, lo, hi)
		return 0, false
	}
	return n, true
}

func (p *parser) secs(l line) (time.Duration, bool) {
	n, ok := p.num(l, 0, 1<<30)
	return time.Duration(n) * time.Second, ok
}

func (p *parser) boolean(l line) (bool, bool) {
	n, ok := p.num(l, 0, 1)
	return n == 1, ok
}

// ignored lists directives accepted for compatibility that have no effect.
var ignored = map[string]string{
	"threads": "Go schedules connections itself", "workerminc": "", "workermincount": "Go schedules connections itself",
	"workermaxcount": "Go schedules connections itself", "workeridletimeout": "Go schedules connections itself",
	"logtag": "", "supervisor": "", "sslengine": "Go's crypto/tls is used", "ecdhcurve": "Go's crypto/tls chooses curves",
	"dhparams": "Go's crypto/tls does not use DH parameters", "anonymise": "", "anonymize": "", "backendstats": "",
	"balancer": "",
}

var globalKeywords = []string{"User", "Group", "RootJail", "Daemon", "LogLevel", "LogFacility", "Alive", "TimeOut",
	"ConnTO", "Client", "Grace", "Control", "PIDFile", "Include", "ListenHTTP", "ListenHTTPS", "ListenTCP",
	"ListenUDP", "Service", "Metrics", "AccessLog", "TrustedProxy"}

func (p *parser) global() {
	c := p.cfg
	for {
		l, ok := p.next()
		if !ok {
			return
		}
		switch kw(l) {
		case "user":
			c.User, _ = p.str(l)
		case "group":
			c.Group, _ = p.str(l)
		case "rootjail":
			c.RootJail, _ = p.str(l)
		case "daemon":
			c.Daemon, _ = p.boolean(l)
		case "loglevel":
			c.LogLevel, c.LogFormat = p.logLevel(l)
		case "logfacility":
			c.LogFacility, _ = p.str(l)
		case "alive":
			var ok bool
			if c.Alive, ok = p.secs(l); ok && c.Alive == 0 {
				p.errf(l.Toks[1].Pos, "Alive must be at least 1 second")
			}
		case "timeout":
			c.TimeOut, _ = p.secs(l)
		case "connto":
			c.ConnTO, _ = p.secs(l)
		case "client":
			c.Client, _ = p.secs(l)
		case "grace":
			c.Grace, _ = p.secs(l)
		case "control":
			c.Control, _ = p.str(l)
		case "pidfile":
			c.PIDFile, _ = p.str(l)
		case "metrics":
			c.Metrics, _ = p.str(l)
		case "accesslog":
			c.AccessLog, _ = p.str(l)
		case "trustedproxy":
			c.Trusted = append(c.Trusted, p.prefixes(l)...)
		case "listenhttp":
			c.Listeners = append(c.Listeners, p.listener(l, KindHTTP))
		case "listenhttps":
			c.Listeners = append(c.Listeners, p.listener(l, KindHTTPS))
		case "listentcp":
			c.Listeners = append(c.Listeners, p.listener(l, KindTCP))
		case "listenudp":
			c.Listeners = append(c.Listeners, p.listener(l, KindUDP))
		case "service":
			c.Services = append(c.Services, p.service(l))
		case "end":
			p.errf(l.pos(), "End without a block to close")
		default:
			p.unknown(l, globalKeywords)
		}
	}
}

// unknown reports an unknown directive. A bare word alone on its line is
// probably a misspelt block, so everything up to its End is skipped to
// avoid a cascade of errors.
func (p *parser) unknown(l line, known []string) {
	word := l.Toks[0].Text
	if why, ok := ignored[strings.ToLower(word)]; ok {
		msg := word + " is ignored"
		if why != "" {
			msg += ": " + why
		}
		p.warnf(l.pos(), "%s", msg)
		return
	}
	msg := fmt.Sprintf("unknown directive %q", word)
	if s := suggest(word, known); s != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", s)
	}
	p.errf(l.pos(), "%s", msg)
	if len(l.Toks) == 1 {
		p.skipBlock()
	}
}

var blockOpeners = map[string]bool{"listenhttp": true, "listenhttps": true, "listentcp": true, "listenudp": true,
	"service": true, "backend": true, "emergency": true, "session": true, "match": true}

func (p *parser) skipBlock() {
	depth := 1
	for p.i < len(p.lines) {
		l := p.lines[p.i]
		p.i++
		k := kw(l)
		if k == "end" {
			depth--
			if depth == 0 {
				return
			}
		} else if blockOpeners[k] || (len(l.Toks) == 1 && suggest(l.Toks[0].Text, globalKeywords) != "") {
			depth++
		}
	}
}

// suggest returns the known keyword closest to word, if close enough.
func suggest(word string, known []string) string {
	best, bestD := "", 3
	w := strings.ToLower(word)
	for _, k := range known {
		if d := editDistance(w, strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

var logFormats = []string{"null", "regular", "extended", "vhost_combined", "combined", "detailed"}

func (p *parser) logLevel(l line) (int, string) {
	if !p.nargs(l, 1) {
		return 1, "regular"
	}
	t := l.Toks[1]
	if n, err := strconv.Atoi(t.Text); err == nil {
		if n < 0 || n > 5 {
			p.errf(t.Pos, "LogLevel: %d is not from 0 to 5", n)
			return 1, "regular"
		}
		return n, logFormats[n]
	}
	for i, f := range logFormats {
		if strings.EqualFold(f, t.Text) {
			return i, f
		}
	}
	p.errf(t.Pos, "LogLevel: unknown format %q (want 0-5 or one of %s)", t.Text, strings.Join(logFormats, ", "))
	return 1, "regular"
}

func (p *parser) prefixes(l line) []netip.Prefix {
	var out []netip.Prefix
	if len(l.Toks) < 2 {
		p.errf(l.pos(), "%s expects at least one address or CIDR", l.Toks[0].Text)
	}
	for _, t := range l.Toks[1:] {
		s := t.Text
		if !strings.Contains(s, "/") {
			if a, err := netip.ParseAddr(s); err == nil {
				out = append(out, netip.PrefixFrom(a, a.BitLen()))
				continue
			}
		}
		pr, err := netip.ParsePrefix(s)
		if err != nil {
			p.errf(t.Pos, "%s: %q is not an address or CIDR", l.Toks[0].Text, s)
			continue
		}
		out = append(out, pr.Masked())
	}
	return out
}

// blockEOF reports a block left open at the end of the file.
func (p *parser) blockEOF(open line) {
	p.errf(open.pos(), "%s is not closed by End", open.Toks[0].Text)
}

func (p *parser) noArgs(l line) {
	if len(l.Toks) > 1 && kw(l) != "service" {
		p.errf(l.Toks[1].Pos, "%s takes no arguments", l.Toks[0].Text)
	}
}

func (p *parser) loadCert(t token, lc *ListenerConfig) {
	pemBytes, err := readSmallFile(t.Text)
	if err != nil {
		p.errf(t.Pos, "Cert: %v", unwrapPath(err))
		return
	}
	cert, err := tls.X509KeyPair(pemBytes, pemBytes)
	if err != nil {
		p.errf(t.Pos, "Cert %s: not a valid PEM key and certificate: %v", t.Text, err)
		return
	}
	lc.Certs = append(lc.Certs, cert)
	lc.CertFiles = append(lc.CertFiles, t.Text)
}

func (p *parser) finish() {
	c := p.cfg
	if len(c.Listeners) == 0 && len(p.diags) == 0 {
		p.errf(Pos{c.File, 1, 1}, "no listener defined (add a ListenHTTP block)")
	}
	seen := map[string]Pos{}
	for _, lc := range c.Listeners {
		if lc.Port != 0 {
			key := sockKey(lc)
			if first, dup := seen[key]; dup {
				p.errf(lc.Pos, "%s: address %s:%d is already used by the listener at %s", lc.Name, lc.Address, lc.Port, first)
			}
			seen[key] = lc.Pos
		}
		if lc.Kind == KindTCP || lc.Kind == KindUDP {
			continue
		}
		if len(lc.Services) == 0 && len(c.Services) == 0 && len(p.diags) == 0 {
			p.errf(lc.Pos, "%s has no Service", lc.Name)
		}
	}
	if c.Control != "" && !filepath.IsAbs(c.Control) {
		p.warnf(Pos{c.File, 1, 1}, "Control %q is relative to the working directory", c.Control)
	}
}

func compileRe(p *parser, t token, expr string) *regexp.Regexp {
	re, err := regexp.Compile(expr)
	if err != nil {
		p.errf(t.Pos, "bad regular expression %q: %v", t.Text, err)
		return nil
	}
	return re
}

// readSmallFile reads a file named by the configuration, refusing
// anything but a regular file of reasonable size (a fuzzed or mistaken
// Include "/dev/zero" must not hang the check).
func readSmallFile(name string) ([]byte, error) {
	st, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	if st.Size() > 16<<20 {
		return nil, fmt.Errorf("%s: larger than 16 MiB", name)
	}
	return os.ReadFile(name)
}
