// Package dnscheck checks what the authoritative servers and caching
// resolvers of a zone serve (serials, NS sets, records and their TTLs),
// watches a change propagate, and changes records with TSIG-signed RFC 2136
// updates that carry prerequisites, keeping a change record of what was
// replaced and for how long caches may still hold it. It never prints:
// results come back as values and progress through callbacks.
package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/migrate-tool/migrate/internal/hint"
)

// DefaultLongTTL is the TTL above which a record is flagged as making a
// move slow.
const DefaultLongTTL = 300 * time.Second

// Query says what to check.
type Query struct {
	Names     []string      // owner names to look up (A, AAAA with CNAME chains, MX, TXT)
	Zone      string        // zone; found from the SOA of the first name when empty
	Servers   []string      // authoritative servers ADDR[:PORT]; found from the zone's NS when empty
	Resolvers []string      // caching resolvers ADDR[:PORT]; used to find NS and checked themselves
	NSPort    int           // port for servers found through NS records (default 53)
	Expect    []Expectation // data the servers should serve
	Timeout   time.Duration // per query (default DefaultTimeout)
	LongTTL   time.Duration // flag TTLs above this (default DefaultLongTTL)
	Key       *Key          // optional: sign queries (not needed for plain lookups)
	Logger    *slog.Logger
}

// Expectation is one NAME=VALUE pair: an IPv4 or IPv6 address the name
// should resolve to, or a host name its CNAME should point to.
type Expectation struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// ParseExpectation parses "NAME=ADDR" (or NAME=TARGET for a CNAME).
func ParseExpectation(s string) (Expectation, error) {
	name, val, ok := strings.Cut(s, "=")
	if !ok || name == "" || val == "" {
		return Expectation{}, fmt.Errorf("--expect %q: want NAME=ADDR", s)
	}
	if _, err := netip.ParseAddr(val); err != nil {
		if _, ok := dns.IsDomainName(val); !ok || strings.ContainsAny(val, " \t") {
			return Expectation{}, fmt.Errorf("--expect %q: %q is neither an address nor a host name", s, val)
		}
		val = strings.ToLower(val)
	}
	return Expectation{Name: strings.ToLower(name), Value: val}, nil
}

// Report is the result of one check.
type Report struct {
	Zone      string         `json:"zone"`
	Time      time.Time      `json:"time"`
	Duration  time.Duration  `json:"duration_ns"`
	Servers   []ServerResult `json:"servers"`
	Resolvers []ServerResult `json:"resolvers,omitempty"`
	Flags     []Flag         `json:"flags,omitempty"`
	Expect    []Expectation  `json:"expect,omitempty"`
	// OK is true when no error flag was raised: every server answered
	// authoritatively with the same serial, NS set and data, and served
	// what Expect asks for.
	OK bool `json:"ok"`
}

// ServerResult is what one server answered.
type ServerResult struct {
	Server        string        `json:"server"`
	NSName        string        `json:"ns_name,omitempty"`
	Role          string        `json:"role"` // "authoritative" or "resolver"
	Error         string        `json:"error,omitempty"`
	Authoritative bool          `json:"authoritative"`
	Serial        uint32        `json:"serial,omitempty"`
	NS            []string      `json:"ns,omitempty"`
	Answers       []Answer      `json:"answers,omitempty"`
	Expected      *bool         `json:"expected,omitempty"`
	RTT           time.Duration `json:"rtt_ns"`
}

// Answer is the answer to one name and type, with the CNAME chain followed.
type Answer struct {
	Name    string   `json:"name"`
	Type    string   `json:"type"`
	Rcode   string   `json:"rcode"`
	Chain   []Record `json:"chain,omitempty"` // CNAME records from Name on
	Records []Record `json:"records,omitempty"`
	Loop    bool     `json:"cname_loop,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// MaxTTL is the longest TTL in the answer, CNAMEs included.
func (a *Answer) MaxTTL() uint32 {
	var m uint32
	for _, r := range append(slices.Clone(a.Chain), a.Records...) {
		m = max(m, r.TTL)
	}
	return m
}

// Record is one resource record.
type Record struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	TTL   uint32 `json:"ttl"`
	Pref  uint16 `json:"preference,omitempty"`
	Value string `json:"value"`
}

// Flag is one problem found. Severity "error" makes the report fail;
// "warning" does not.
type Flag struct {
	Kind     string `json:"kind"`
	Severity string `json:"severity"`
	Server   string `json:"server,omitempty"`
	Name     string `json:"name,omitempty"`
	Message  string `json:"message"`
}

// Flag kinds.
const (
	FlagNoAnswer       = "no-answer"
	FlagLame           = "lame"
	FlagSerialMismatch = "serial-mismatch"
	FlagNSMismatch     = "ns-mismatch"
	FlagDataMismatch   = "data-mismatch"
	FlagCNAMELoop      = "cname-loop"
	FlagSingleMX       = "single-mx"
	FlagLongTTL        = "long-ttl"
	FlagNotExpected    = "not-expected"
)

// maxInFlight bounds the queries in flight to one server.
const maxInFlight = 16

// lookupTypes are asked for each name.
var lookupTypes = []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeMX, dns.TypeTXT}

// Check queries every authoritative server (and resolver) concurrently and
// compares what they serve. An error is returned only when the check could
// not run at all (no zone, no servers); problems with servers are flags.
func Check(ctx context.Context, q Query) (*Report, error) {
	start := time.Now()
	q, c, err := q.normalize()
	if err != nil {
		return nil, err
	}
	if q.Zone == "" {
		if q.Zone, err = FindZone(ctx, q.Names[0], append(slices.Clone(q.Servers), q.Resolvers...), q.Timeout); err != nil {
			return nil, err
		}
	}
	for i, e := range q.Expect {
		q.Expect[i].Name = absName(e.Name, q.Zone)
		if _, err := netip.ParseAddr(e.Value); err != nil {
			q.Expect[i].Value = absName(e.Value, q.Zone)
		}
		if !slices.Contains(q.Names, e.Name) {
			q.Names = append(q.Names, e.Name)
		}
	}
	for i, n := range q.Names {
		if q.Names[i] = absName(n, q.Zone); !dns.IsSubDomain(q.Zone, q.Names[i]) {
			return nil, hint.With(fmt.Errorf("%s is not in zone %s", n, strings.TrimSuffix(q.Zone, ".")), "check --zone, or check names of different zones separately")
		}
	}
	slices.Sort(q.Names)
	q.Names = slices.Compact(q.Names)
	rep := &Report{Zone: q.Zone, Time: start, Expect: q.Expect}
	var servers []target
	for _, s := range q.Servers {
		servers = append(servers, target{addr: s})
	}
	var delegated []string
	if len(servers) == 0 {
		servers, delegated, err = discover(ctx, c, q)
		if err != nil {
			return nil, err
		}
	}
	rep.Servers = make([]ServerResult, len(servers))
	rep.Resolvers = make([]ServerResult, len(q.Resolvers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Go(func() { rep.Servers[i] = checkServer(ctx, c, q, s, false) })
	}
	for i, s := range q.Resolvers {
		wg.Go(func() { rep.Resolvers[i] = checkServer(ctx, c, q, target{addr: s}, true) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rep.Flags = compare(q, rep, delegated)
	rep.OK = !slices.ContainsFunc(rep.Flags, func(f Flag) bool { return f.Severity == "error" })
	rep.Duration = time.Since(start)
	return rep, nil
}

type target struct{ addr, nsName string }

func (q Query) normalize() (Query, *client, error) {
	if len(q.Names) == 0 {
		return q, nil, errors.New("no name to check")
	}
	q.Names = slices.Clone(q.Names)
	for i, n := range q.Names {
		if _, ok := dns.IsDomainName(n); !ok {
			return q, nil, hint.With(fmt.Errorf("bad name %q", n), "give host names such as www.example.com")
		}
		q.Names[i] = strings.ToLower(n)
	}
	if q.Zone != "" {
		q.Zone = dns.CanonicalName(q.Zone)
	}
	q.Expect = slices.Clone(q.Expect)
	for i, e := range q.Expect {
		q.Expect[i].Name = strings.ToLower(e.Name)
	}
	if q.NSPort == 0 {
		q.NSPort = 53
	}
	if q.Timeout <= 0 {
		q.Timeout = DefaultTimeout
	}
	if q.LongTTL <= 0 {
		q.LongTTL = DefaultLongTTL
	}
	q.Servers = normAddrs(q.Servers)
	q.Resolvers = normAddrs(q.Resolvers)
	if len(q.Servers) == 0 && len(q.Resolvers) == 0 {
		return q, nil, hint.With(errors.New("no server to ask"), "give the authoritative servers with --server or a resolver with --resolver")
	}
	return q, newClient(q.Timeout, q.Key, q.Logger), nil
}

func normAddrs(in []string) []string {
	out := make([]string, 0, len(in))
	for _, a := range in {
		out = append(out, HostPort(a, 53))
	}
	return out
}

// FindZone finds the zone holding name from the SOA record the first
// answering server returns (in the answer at the apex, else in the
// authority section).
func FindZone(ctx context.Context, name string, servers []string, timeout time.Duration) (string, error) {
	c := newClient(timeout, nil, nil)
	var errs []error
	for _, s := range normAddrs(servers) {
		r, _, err := c.query(ctx, s, name, dns.TypeSOA, true)
		if err != nil {
			errs = append(errs, netError("soa "+strings.TrimSuffix(name, "."), s, err))
			continue
		}
		for _, rr := range append(slices.Clone(r.Answer), r.Ns...) {
			if soa, ok := rr.(*dns.SOA); ok {
				return dns.CanonicalName(soa.Hdr.Name), nil
			}
		}
		errs = append(errs, newRcodeError("soa "+strings.TrimSuffix(name, "."), s, answerCode(r), false))
	}
	if len(errs) == 0 {
		return "", hint.With(fmt.Errorf("find zone of %s: no server to ask", strings.TrimSuffix(name, ".")),
			"give --zone, or a server to ask with --server or --resolver")
	}
	return "", hint.With(fmt.Errorf("find zone of %s: %w", name, errs[0]),
		"no server knows a zone for this name: give it with --zone and check the servers serve it")
}

// discover finds the zone's NS names through the resolvers and their
// addresses; it returns the servers and the delegated NS set.
func discover(ctx context.Context, c *client, q Query) ([]target, []string, error) {
	var lastErr error
	for _, res := range q.Resolvers {
		r, _, err := c.query(ctx, res, q.Zone, dns.TypeNS, true)
		if err != nil {
			lastErr = netError("ns "+q.Zone, res, err)
			continue
		}
		var names []string
		for _, rr := range r.Answer {
			if ns, ok := rr.(*dns.NS); ok {
				names = append(names, dns.CanonicalName(ns.Ns))
			}
		}
		if len(names) == 0 {
			lastErr = newRcodeError("ns "+q.Zone, res, answerCode(r), false)
			continue
		}
		slices.Sort(names)
		var out []target
		for _, n := range names {
			for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
				ar, _, err := c.query(ctx, res, n, t, true)
				if err != nil {
					continue
				}
				for _, rr := range ar.Answer {
					switch a := rr.(type) {
					case *dns.A:
						out = append(out, target{addr: HostPort(a.A.String(), q.NSPort), nsName: n})
					case *dns.AAAA:
						out = append(out, target{addr: HostPort(a.AAAA.String(), q.NSPort), nsName: n})
					}
				}
			}
		}
		if len(out) == 0 {
			return nil, names, hint.With(fmt.Errorf("no address for the name servers of %s (%s)", q.Zone, strings.Join(names, " ")), "give the servers with --server")
		}
		return out, names, nil
	}
	return nil, nil, hint.With(fmt.Errorf("find name servers of %s: %w", q.Zone, lastErr), "give the servers with --server")
}

// checkServer asks one server the SOA and NS of the zone (authoritative
// servers only) and every name's records, all concurrently.
func checkServer(ctx context.Context, c *client, q Query, t target, resolver bool) ServerResult {
	res := ServerResult{Server: t.addr, NSName: t.nsName, Role: "authoritative"}
	if resolver {
		res.Role = "resolver"
	} else {
		r, rtt, err := c.query(ctx, t.addr, q.Zone, dns.TypeSOA, false)
		res.RTT = rtt
		if err != nil {
			res.Error = netError("soa "+strings.TrimSuffix(q.Zone, "."), t.addr, err).Error()
			return res
		}
		res.Authoritative = r.Authoritative && r.Rcode == dns.RcodeSuccess
		for _, rr := range r.Answer {
			if soa, ok := rr.(*dns.SOA); ok {
				res.Serial = soa.Serial
			}
		}
		if !res.Authoritative {
			res.Error = fmt.Sprintf("not authoritative for %s (rcode %s, aa=%v)", q.Zone, rcodeName(r.Rcode), r.Authoritative)
			return res
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	if !resolver {
		wg.Go(func() {
			ns := queryNS(ctx, c, t.addr, q.Zone)
			mu.Lock()
			res.NS = ns
			mu.Unlock()
		})
	}
	answers := make([]Answer, len(q.Names)*len(lookupTypes))
	sem := make(chan struct{}, maxInFlight)
	for i, name := range q.Names {
		for j, typ := range lookupTypes {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				answers[i*len(lookupTypes)+j] = chase(ctx, c, t.addr, q.Zone, name, typ, resolver)
			})
		}
	}
	wg.Wait()
	for _, a := range answers {
		if a.Rcode == "NOERROR" && len(a.Records) == 0 && len(a.Chain) == 0 && a.Error == "" {
			continue // no data of this type
		}
		res.Answers = append(res.Answers, a)
	}
	if len(q.Expect) > 0 {
		ok := serves(res.Answers, q.Expect)
		res.Expected = &ok
	}
	return res
}

func queryNS(ctx context.Context, c *client, server, zone string) []string {
	r, _, err := c.query(ctx, server, zone, dns.TypeNS, false)
	if err != nil {
		return nil
	}
	var ns []string
	for _, rr := range r.Answer {
		if n, ok := rr.(*dns.NS); ok {
			ns = append(ns, dns.CanonicalName(n.Ns))
		}
	}
	slices.Sort(ns)
	return ns
}
