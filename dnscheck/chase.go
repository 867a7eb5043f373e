package dnscheck

import (
	"context"
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// maxChain bounds how many CNAMEs are followed.
const maxChain = 8

// chase asks server for name/qtype and follows CNAMEs: through the answer
// section first, then by asking again for a target inside the zone that
// the server did not follow itself. A name seen twice is a loop.
func chase(ctx context.Context, c *client, server, zone, name string, qtype uint16, recurse bool) Answer {
	a := Answer{Name: name, Type: dns.TypeToString[qtype]}
	seen := map[string]bool{}
	cur := name
	for hop := 0; hop <= maxChain; hop++ {
		r, _, err := c.query(ctx, server, cur, qtype, recurse)
		if err != nil {
			a.Error = netError(strings.ToLower(a.Type)+" "+strings.TrimSuffix(cur, "."), server, err).Error()
			return a
		}
		a.Rcode = rcodeName(r.Rcode)
		if r.Rcode != dns.RcodeSuccess {
			return a
		}
		next, done := walk(&a, r.Answer, cur, qtype, seen)
		if done || a.Loop {
			return a
		}
		if next == cur || (!recurse && !dns.IsSubDomain(zone, next)) {
			return a // no data, or a target another zone serves
		}
		cur = next
	}
	a.Error = fmt.Sprintf("cname chain longer than %d", maxChain)
	return a
}

// walk follows the CNAME chain from cur through rrs, appending to a. It
// returns the last name reached and whether records of qtype were found.
func walk(a *Answer, rrs []dns.RR, cur string, qtype uint16, seen map[string]bool) (string, bool) {
	for {
		if seen[cur] {
			a.Loop = true
			return cur, false
		}
		seen[cur] = true
		var cname *dns.CNAME
		found := false
		for _, rr := range rrs {
			h := rr.Header()
			if !strings.EqualFold(h.Name, cur) {
				continue
			}
			if cn, ok := rr.(*dns.CNAME); ok && qtype != dns.TypeCNAME {
				cname = cn
				continue
			}
			if h.Rrtype == qtype {
				a.Records = append(a.Records, toRecord(rr))
				found = true
			}
		}
		if found || cname == nil {
			if !found {
				delete(seen, cur) // may be asked for again
			}
			return cur, found
		}
		a.Chain = append(a.Chain, toRecord(cname))
		cur = dns.CanonicalName(cname.Target)
	}
}

// toRecord converts a miekg/dns record.
func toRecord(rr dns.RR) Record {
	h := rr.Header()
	r := Record{Name: dns.CanonicalName(h.Name), Type: dns.TypeToString[h.Rrtype], TTL: h.Ttl}
	switch v := rr.(type) {
	case *dns.A:
		r.Value = v.A.String()
	case *dns.AAAA:
		r.Value = v.AAAA.String()
	case *dns.CNAME:
		r.Value = dns.CanonicalName(v.Target)
	case *dns.MX:
		r.Pref, r.Value = v.Preference, dns.CanonicalName(v.Mx)
	case *dns.NS:
		r.Value = dns.CanonicalName(v.Ns)
	default:
		r.Value = strings.TrimPrefix(rr.String(), h.String())
	}
	return r
}
