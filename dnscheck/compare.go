package dnscheck

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// compare raises the flags for a report.
func compare(q Query, rep *Report, delegated []string) []Flag {
	var flags []Flag
	add := func(kind, sev, server, name, format string, a ...any) {
		flags = append(flags, Flag{Kind: kind, Severity: sev, Server: server, Name: name, Message: fmt.Sprintf(format, a...)})
	}
	var ok []ServerResult
	for _, s := range rep.Servers {
		switch {
		case s.Error != "" && s.Serial == 0 && !strings.Contains(s.Error, "not authoritative"):
			add(FlagNoAnswer, "error", s.Server, "", "%s", s.Error)
		case !s.Authoritative:
			add(FlagLame, "error", s.Server, "", "lame: %s", s.Error)
		default:
			ok = append(ok, s)
		}
	}
	for _, s := range rep.Resolvers {
		for _, a := range s.Answers {
			if a.Error != "" {
				add(FlagNoAnswer, "error", s.Server, a.Name, "%s", a.Error)
				break
			}
		}
	}
	if len(ok) > 1 {
		serials := map[uint32][]string{}
		for _, s := range ok {
			serials[s.Serial] = append(serials[s.Serial], s.Server)
		}
		if len(serials) > 1 {
			add(FlagSerialMismatch, "error", "", "", "serials differ: %s", describeGroups(serials))
		}
		nsSets := map[string][]string{}
		for _, s := range ok {
			k := strings.Join(s.NS, " ")
			nsSets[k] = append(nsSets[k], s.Server)
		}
		if len(nsSets) > 1 {
			add(FlagNSMismatch, "error", "", "", "NS sets differ: %s", describeGroups(nsSets))
		}
		dataMismatch(ok, add)
	}
	if len(delegated) > 0 && len(ok) > 0 && !slices.Equal(delegated, ok[0].NS) {
		add(FlagNSMismatch, "error", ok[0].Server, "", "delegation (%s) differs from the zone's NS set (%s)", strings.Join(delegated, " "), strings.Join(ok[0].NS, " "))
	}
	flagRecords(q, ok, add)
	for _, s := range append(slices.Clone(rep.Servers), rep.Resolvers...) {
		if s.Expected != nil && !*s.Expected {
			add(FlagNotExpected, "error", s.Server, "", "%s %s does not serve the expected data yet", s.Role, s.Server)
		}
	}
	return flags
}

type addFunc func(kind, sev, server, name, format string, a ...any)

// dataMismatch flags names whose answers differ between servers.
func dataMismatch(ok []ServerResult, add addFunc) {
	keys := map[string]map[string][]string{} // name/type -> rendered answer -> servers
	var order []string
	for _, s := range ok {
		for _, a := range s.Answers {
			k := a.Name + " " + a.Type
			if keys[k] == nil {
				keys[k] = map[string][]string{}
				order = append(order, k)
			}
			keys[k][renderAnswer(a)] = append(keys[k][renderAnswer(a)], s.Server)
		}
	}
	for _, k := range order {
		n := 0
		for _, servers := range keys[k] {
			n += len(servers)
		}
		if len(keys[k]) > 1 || n < len(ok) {
			add(FlagDataMismatch, "error", "", strings.Fields(k)[0], "%s: servers answer differently: %s", k, describeGroups(keys[k]))
		}
	}
}

// flagRecords raises CNAME loop, long TTL and single MX flags once per name.
func flagRecords(q Query, ok []ServerResult, add addFunc) {
	seen := map[string]bool{}
	once := func(k string) bool {
		if seen[k] {
			return false
		}
		seen[k] = true
		return true
	}
	for _, s := range ok {
		for _, a := range s.Answers {
			if a.Loop && once("loop "+a.Name) {
				add(FlagCNAMELoop, "error", s.Server, a.Name, "CNAME loop: %s", chainString(a))
			}
			if ttl := time.Duration(a.MaxTTL()) * time.Second; ttl > q.LongTTL && once("ttl "+a.Name+a.Type) {
				add(FlagLongTTL, "warning", s.Server, a.Name, "%s %s has TTL %s: caches may keep the old answer that long after a change (lower it with `migrate dns lower-ttl`)", a.Name, a.Type, ttl)
			}
			if a.Type == "MX" && len(a.Records) > 0 && once("mx "+a.Name) {
				prefs := map[uint16]bool{}
				for _, r := range a.Records {
					prefs[r.Pref] = true
				}
				if len(prefs) < 2 {
					add(FlagSingleMX, "warning", s.Server, a.Name, "%s has no MX with a second preference: mail has no fallback while the mail server moves", a.Name)
				}
			}
		}
	}
}

func renderAnswer(a Answer) string {
	var parts []string
	for _, r := range append(slices.Clone(a.Chain), a.Records...) {
		parts = append(parts, fmt.Sprintf("%s %d %s %s", r.Name, r.TTL, r.Type, recordValue(r)))
	}
	slices.Sort(parts)
	if a.Rcode != "NOERROR" {
		parts = append(parts, a.Rcode)
	}
	return strings.Join(parts, "; ")
}

func recordValue(r Record) string {
	if r.Type == "MX" {
		return fmt.Sprintf("%d %s", r.Pref, r.Value)
	}
	return r.Value
}

func chainString(a Answer) string {
	var s []string
	for _, r := range a.Chain {
		s = append(s, r.Name+" -> "+r.Value)
	}
	return strings.Join(s, ", ")
}

func describeGroups[K comparable](m map[K][]string) string {
	var parts []string
	for k, servers := range m {
		v := fmt.Sprint(k)
		if v == "" {
			v = "(none)"
		}
		parts = append(parts, fmt.Sprintf("%s from %s", v, strings.Join(servers, ",")))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

// serves reports whether answers hold exactly the expected data: for each
// expected name, the addresses of each family asked for (after CNAMEs) or
// the first CNAME target.
func serves(answers []Answer, exp []Expectation) bool {
	for _, name := range expectedNames(exp) {
		want4, want6, wantCNAME := expectedValues(exp, name)
		if wantCNAME != "" {
			if !slices.ContainsFunc(answers, func(a Answer) bool {
				return a.Name == name && a.Type == "A" && len(a.Chain) > 0 && a.Chain[0].Value == wantCNAME
			}) {
				return false
			}
		}
		if len(want4) > 0 && !slices.Equal(want4, addresses(answers, name, "A")) {
			return false
		}
		if len(want6) > 0 && !slices.Equal(want6, addresses(answers, name, "AAAA")) {
			return false
		}
	}
	return true
}

// OldTTL is the longest TTL among answers for expected names that do not
// match the expectation: how long a cache may keep that answer.
func staleTTL(answers []Answer, exp []Expectation) (uint32, bool) {
	var ttl uint32
	stale := false
	for _, name := range expectedNames(exp) {
		var sub []Expectation
		for _, e := range exp {
			if e.Name == name {
				sub = append(sub, e)
			}
		}
		if serves(answers, sub) {
			continue
		}
		stale = true
		for _, a := range answers {
			if a.Name == name && (a.Type == "A" || a.Type == "AAAA") {
				ttl = max(ttl, a.MaxTTL())
			}
		}
	}
	return ttl, stale
}

func expectedNames(exp []Expectation) []string {
	var names []string
	for _, e := range exp {
		if !slices.Contains(names, e.Name) {
			names = append(names, e.Name)
		}
	}
	return names
}

func expectedValues(exp []Expectation, name string) (v4, v6 []string, cname string) {
	for _, e := range exp {
		if e.Name != name {
			continue
		}
		ip, err := netip.ParseAddr(e.Value)
		switch {
		case err != nil:
			cname = e.Value
		case ip.Is4():
			v4 = append(v4, ip.String())
		default:
			v6 = append(v6, ip.String())
		}
	}
	slices.Sort(v4)
	slices.Sort(v6)
	return v4, v6, cname
}

func addresses(answers []Answer, name, typ string) []string {
	var out []string
	for _, a := range answers {
		if a.Name == name && a.Type == typ {
			for _, r := range a.Records {
				if ip, err := netip.ParseAddr(r.Value); err == nil {
					out = append(out, ip.String())
				}
			}
		}
	}
	slices.Sort(out)
	return out
}
