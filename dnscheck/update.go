package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/migrate-tool/migrate/internal/hint"
)

// DefaultConfirmTimeout bounds how long an update waits for every
// authoritative server to serve it.
const DefaultConfirmTimeout = 30 * time.Second

// Updater sends RFC 2136 updates, signed with TSIG, to a zone's primary.
type Updater struct {
	Zone           string   // found from the SOA of the name when empty
	Primary        string   // ADDR[:PORT]; the SOA MNAME (through Resolvers or Auth) when empty
	Auth           []string // servers to confirm on; the zone's NS (NSPort) when empty
	Resolvers      []string // to find the zone, primary and NS when not given
	NSPort         int      // port of servers found by name (default 53)
	Key            *Key
	Timeout        time.Duration // per message (default DefaultTimeout)
	ConfirmTimeout time.Duration // default DefaultConfirmTimeout; negative: do not confirm
	// RecordPath, when set, is where the change record is written: before
	// the update (status "pending"), and after it. A failed update removes it.
	RecordPath string
	Logger     *slog.Logger

	// expected, when set, are the sets the zone must hold for the update
	// (instead of the ones read): Restore requires what the change put in.
	expected []RRset

	beforeSend func() // test hook: runs between reading and updating
}

// editTypes are the types a name's records are read and changed in.
var editTypes = []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeCNAME, dns.TypeMX, dns.TypeTXT}

// LowerTTL lowers the TTL of every RRset at name whose TTL is above ttl.
// With nothing above ttl it returns a change with Status "unchanged".
func (u *Updater) LowerTTL(ctx context.Context, name string, ttl uint32) (*Change, error) {
	if ttl == 0 {
		return nil, errors.New("ttl must be at least 1")
	}
	return u.apply(ctx, "lower-ttl", name, editTypes, func(zone string, cur []RRset) ([]RRset, error) {
		var out []RRset
		for _, s := range cur {
			if s.Exists() && s.TTL > ttl {
				n := s
				n.TTL = ttl
				out = append(out, n)
			}
		}
		return out, nil
	})
}

// Set replaces name's records of type rrtype ("A", "AAAA", "CNAME", "MX"
// or "TXT") with values (MX values: "PREF HOST"). Setting a CNAME also
// removes A and AAAA; setting anything else removes a CNAME. ttl 0 keeps
// the TTL of the set replaced (300 if none).
func (u *Updater) Set(ctx context.Context, name, rrtype string, values []string, ttl uint32) (*Change, error) {
	typ := dns.StringToType[strings.ToUpper(rrtype)]
	switch typ {
	case dns.TypeA, dns.TypeAAAA, dns.TypeCNAME, dns.TypeMX, dns.TypeTXT:
	default:
		return nil, fmt.Errorf("cannot set %s records (A, AAAA, CNAME, MX or TXT)", rrtype)
	}
	return u.apply(ctx, "set", name, editTypes, func(zone string, cur []RRset) ([]RRset, error) {
		return setPlan(zone, cur, absName(name, zone), typ, values, ttl)
	})
}

// Restore puts back what change c replaced, provided the zone still
// holds what c put in (prerequisites); the result is a new change.
func (u *Updater) Restore(ctx context.Context, c *Change) (*Change, error) {
	uu := *u
	uu.Zone = c.Zone
	if uu.Primary == "" {
		uu.Primary = c.Primary
	}
	var types []uint16
	for _, s := range append(slices.Clone(c.Old), c.New...) {
		if t := s.typeCode(); t != 0 && !slices.Contains(types, t) {
			types = append(types, t)
		}
	}
	uu.expected = c.New
	return uu.apply(ctx, "restore", c.Name, types, func(zone string, cur []RRset) ([]RRset, error) {
		return c.Old, nil
	})
}

// RestoreSets makes name's records of the types in sets equal to sets
// (used to restore names from a snapshot).
func (u *Updater) RestoreSets(ctx context.Context, name string, sets []RRset) (*Change, error) {
	var types []uint16
	for _, s := range sets {
		types = append(types, s.typeCode())
	}
	return u.apply(ctx, "restore", name, types, func(zone string, cur []RRset) ([]RRset, error) { return sets, nil })
}

// setPlan computes the sets a Set puts in, given the current ones.
func setPlan(zone string, cur []RRset, name string, typ uint16, values []string, ttl uint32) ([]RRset, error) {
	data, err := parseValues(typ, values, zone)
	if err != nil {
		return nil, err
	}
	byType := map[string]RRset{}
	for _, s := range cur {
		byType[s.Type] = s
	}
	if ttl == 0 {
		ttl = 300
		for _, t := range []string{dns.TypeToString[typ], "CNAME", "A", "AAAA"} {
			if s := byType[t]; s.Exists() {
				ttl = s.TTL
				break
			}
		}
	}
	out := []RRset{{Name: name, Type: dns.TypeToString[typ], TTL: ttl, Data: data}}
	if typ == dns.TypeCNAME {
		for _, t := range []string{"MX", "TXT"} {
			if byType[t].Exists() {
				return nil, hint.With(fmt.Errorf("%s has %s records: a CNAME cannot sit beside other data", name, t),
					"remove them first, or point the name's A/AAAA records at the new address instead")
			}
		}
		for _, t := range []string{"A", "AAAA"} {
			if byType[t].Exists() {
				out = append(out, RRset{Name: name, Type: t, Data: []string{}})
			}
		}
	} else if byType["CNAME"].Exists() {
		out = append(out, RRset{Name: name, Type: "CNAME", Data: []string{}})
	}
	return out, nil
}

// apply reads name's current sets of types from the primary, asks plan
// for the new ones, records the change, sends one update whose
// prerequisites are the sets read, and confirms it on every server.
func (u *Updater) apply(ctx context.Context, op, name string, types []uint16, plan func(zone string, cur []RRset) ([]RRset, error)) (*Change, error) {
	c, zone, primary, err := u.setup(ctx, name)
	if err != nil {
		return nil, err
	}
	name = absName(name, zone)
	serial, err := u.serial(ctx, c, primary, zone)
	if err != nil {
		return nil, err
	}
	cur, err := u.read(ctx, c, primary, zone, name, types)
	if err != nil {
		return nil, err
	}
	for i := range cur {
		cur[i].Name = name
	}
	planned, err := plan(zone, cur)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, strings.TrimSuffix(name, "."), err)
	}
	ch := &Change{Version: ChangeVersion, Op: op, Status: "pending", Zone: zone, Name: name, Primary: primary,
		Created: time.Now().UTC(), SerialBefore: serial}
	if u.Key != nil {
		ch.KeyName = u.Key.Name
	}
	for _, n := range planned {
		n.Name = name
		if n.Data == nil {
			n.Data = []string{}
		}
		old := findSet(cur, n.Type, name)
		if u.expected != nil {
			old = findSet(u.expected, n.Type, name)
		} else if old.equal(n) && old.TTL == n.TTL {
			continue
		}
		ch.Old = append(ch.Old, old)
		ch.New = append(ch.New, n)
		ch.MaxOldTTL = max(ch.MaxOldTTL, old.TTL)
	}
	if len(ch.New) == 0 {
		ch.Status = "unchanged"
		return ch, nil
	}
	if err := u.send(ctx, c, primary, ch); err != nil {
		return nil, err
	}
	return u.confirm(ctx, c, ch)
}

func findSet(sets []RRset, typ, name string) RRset {
	for _, s := range sets {
		if s.Type == typ && s.Name == name {
			return s
		}
	}
	return RRset{Name: name, Type: typ, Data: []string{}}
}

// absName makes name absolute: a name without a final dot that is not
// already inside zone is taken relative to it.
func absName(name, zone string) string {
	if strings.HasSuffix(name, ".") || name == "" {
		return dns.CanonicalName(name)
	}
	f := dns.CanonicalName(name)
	if zone == "" || dns.IsSubDomain(zone, f) {
		return f
	}
	if name == "@" {
		return zone
	}
	return dns.CanonicalName(name + "." + zone)
}
