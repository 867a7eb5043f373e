package accesslog

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/migrate-tool/migrate/internal/hint"
)

type formatDef struct {
	name Format
	kind kind
}

// detectOrder lists formats from the most to the least specific: each one's
// lines would also be accepted by some later entry, never by an earlier one.
var detectOrder = []formatDef{
	{HAProxy, kHAProxy},
	{Pound5, kPound5},
	{VhostCombined, kVhostCombined},
	{Combined, kCombined},
	{Common, kCommon},
	{Pound2, kPound2},
	{Pound1, kPound1},
}

var byName = map[Format]kind{
	Common: kCommon, Combined: kCombined, VhostCombined: kVhostCombined,
	Pound1: kPound1, Pound2: kPound2, Pound3: kVhostCombined,
	Pound4: kCombined, Pound5: kPound5, HAProxy: kHAProxy,
}

var aliases = map[string]Format{
	"clf": Common, "apache-common": Common, "apache_common": Common,
	"apache": Combined, "apache-combined": Combined, "apache_combined": Combined,
	"nginx": Combined, "nginx-combined": Combined, "nginx_combined": Combined,
	"vhost-combined": VhostCombined, "apache-vhost": VhostCombined,
	"pound-regular": Pound1, "pound-extended": Pound2, "pound-vhost_combined": Pound3,
	"pound-combined": Pound4, "pound-detailed": Pound5,
	"haproxy-httplog": HAProxy, "httplog": HAProxy,
}

// Formats lists the canonical format names, for help texts.
func Formats() []Format {
	out := make([]Format, 0, len(byName))
	for f := range byName {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// UnknownFormatError is returned for a format name that is not known.
type UnknownFormatError struct{ Name string }

func (e *UnknownFormatError) Error() string {
	return fmt.Sprintf("unknown log format %q", e.Name)
}

// LookupFormat resolves a format name or alias ("nginx", "pound-detailed",
// "httplog"). "" and "auto" return "" (detect).
func LookupFormat(name string) (Format, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	if n == "" || n == "auto" {
		return "", nil
	}
	if _, ok := byName[Format(n)]; ok {
		return Format(n), nil
	}
	if f, ok := aliases[n]; ok {
		return f, nil
	}
	names := make([]string, 0, len(byName))
	for _, f := range Formats() {
		names = append(names, string(f))
	}
	return "", hint.With(&UnknownFormatError{Name: name},
		"use auto or one of: "+strings.Join(names, ", "))
}

// Parser turns lines into Records. It keeps caches and is not safe for
// concurrent use; use one Parser per goroutine.
type Parser struct {
	format Format // "" while detecting
	fixed  kind   // kNone while detecting
	opts   Options
	loc    *time.Location
	now    func() time.Time

	votes    map[Format]int
	clfCache timeCache
	hapCache timeCache
	sysCache timeCache
	isoCache timeCache
	zones    zones
	clients  map[string]clientEntry
	strs     map[string]string
	// Direct-mapped caches in front of the maps: most lines repeat the
	// clients, agents and referers of recent lines.
	cliFront [4096]clientEntry
	strFront [1024]string
}

type clientEntry struct {
	s    string
	addr netip.Addr
}

const internMax = 1 << 14

// NewParser returns a parser for the named format (see LookupFormat), or
// one that detects the format from the lines it sees when name is "" or
// "auto".
func NewParser(name string, opts Options) (*Parser, error) {
	f, err := LookupFormat(name)
	if err != nil {
		return nil, err
	}
	p := &Parser{
		opts: opts, loc: opts.Location, now: opts.Now,
		votes: map[Format]int{}, zones: zones{},
		clients: map[string]clientEntry{}, strs: map[string]string{},
	}
	if p.loc == nil {
		p.loc = time.Local
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.opts.DetectLines <= 0 {
		p.opts.DetectLines = 8
	}
	if f != "" {
		p.format, p.fixed = f, byName[f]
	}
	return p, nil
}

// Format is the parser's format: the one it was created with, the one
// detection settled on, or "" while still detecting.
func (p *Parser) Format() Format { return p.format }

// Parse parses one line (without its newline; a trailing "\r" is ignored)
// into r, overwriting all of r's fields. It returns ErrNoMatch for a line
// not in the format. While detecting, each line is parsed in the first
// format that accepts it, and after Options.DetectLines lines in one format
// the parser keeps to that format.
func (p *Parser) Parse(line []byte, r *Record) error {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	msg, st, tag := p.syslogPrefix(line)
	*r = Record{}
	if p.fixed != kNone {
		c := cursor{b: msg}
		if !p.parseAs(p.fixed, &c, r) {
			*r = Record{}
			return ErrNoMatch
		}
		r.Format = p.format
		if r.Time.IsZero() {
			r.Time = st
		}
		return nil
	}
	for _, d := range detectOrder {
		c := cursor{b: msg}
		if !p.parseAs(d.kind, &c, r) {
			*r = Record{}
			continue
		}
		f := relabel(d.name, tag)
		r.Format = f
		if r.Time.IsZero() {
			r.Time = st
		}
		p.votes[f]++
		if p.votes[f] >= p.opts.DetectLines {
			p.format, p.fixed = f, byName[f]
		}
		return nil
	}
	return ErrNoMatch
}

// relabel names Pound's Apache-like levels after Pound when syslog says so.
func relabel(f Format, tag []byte) Format {
	if string(tag) != "pound" {
		return f
	}
	switch f {
	case VhostCombined:
		return Pound3
	case Combined:
		return Pound4
	}
	return f
}

// Detect names the format of a sample of lines: the format accepting the
// most lines, ties going to the more specific format. It fails when no line
// parses.
func Detect(lines [][]byte) (Format, error) {
	p, _ := NewParser("", Options{DetectLines: 1 << 30})
	var r Record
	for _, l := range lines {
		_ = p.Parse(l, &r)
	}
	best, bestN := Format(""), 0
	for _, d := range append(detectOrder, formatDef{Pound3, kNone}, formatDef{Pound4, kNone}) {
		if n := p.votes[d.name]; n > bestN {
			best, bestN = d.name, n
		}
	}
	if best == "" {
		return "", hint.With(fmt.Errorf("detect log format: none of %d lines is in a known format", len(lines)),
			"name the format with --log-format (see docs/logs.md)")
	}
	return best, nil
}

// quickHash mixes the length and the first and last 8 bytes of b: two
// loads and one multiplication, enough to spread IPs, hosts and agents.
func quickHash(b []byte) uint32 {
	n := len(b)
	var x uint64
	if n >= 8 {
		x = binary.LittleEndian.Uint64(b) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(b[n-8:]), 29)
	} else {
		for _, c := range b {
			x = x<<8 | uint64(c)
		}
	}
	x = (x ^ uint64(n)*0x9e3779b97f4a7c15) * 0xff51afd7ed558ccd
	return uint32(x >> 40)
}

func (p *Parser) client(b []byte, r *Record) {
	slot := &p.cliFront[quickHash(b)%uint32(len(p.cliFront))]
	if slot.s == string(b) && len(b) > 0 {
		r.Client, r.Addr = slot.s, slot.addr
		return
	}
	e, ok := p.clients[string(b)]
	if !ok {
		e = clientEntry{s: string(b)}
		e.addr, _ = netip.ParseAddr(e.s)
		if len(p.clients) < internMax {
			p.clients[e.s] = e
		}
	}
	*slot = e
	r.Client, r.Addr = e.s, e.addr
}

func (p *Parser) host(b []byte, r *Record) {
	if len(b) == 1 && b[0] == '-' {
		return
	}
	r.Host = p.str(stripPort(b))
}

// str interns b; "-" and "" give "".
func (p *Parser) str(b []byte) string {
	if len(b) == 0 || (len(b) == 1 && b[0] == '-') {
		return ""
	}
	slot := &p.strFront[quickHash(b)%uint32(len(p.strFront))]
	if *slot == string(b) {
		return *slot
	}
	s, ok := p.strs[string(b)]
	if !ok {
		s = string(b)
		if len(p.strs) < internMax {
			p.strs[s] = s
		}
	}
	*slot = s
	return s
}

func (p *Parser) request(b []byte, r *Record) {
	if p.opts.SkipPath {
		if sp := bytes.IndexByte(b, ' '); sp > 0 {
			r.Method = method(validMethod(b[:sp]), p)
		}
		return
	}
	m, target := splitRequest(b)
	r.Method = method(m, p)
	if !p.opts.SkipPath && len(target) > 0 {
		r.Path = string(target)
	}
}

func method(b []byte, p *Parser) string {
	switch string(b) {
	case "":
		return ""
	case "GET":
		return "GET"
	case "POST":
		return "POST"
	case "HEAD":
		return "HEAD"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "OPTIONS":
		return "OPTIONS"
	case "PATCH":
		return "PATCH"
	case "CONNECT":
		return "CONNECT"
	}
	return p.str(b)
}
