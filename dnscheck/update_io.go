package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/migrate-tool/migrate/internal/hint"
)

// setup finds the zone and the primary. Reads go unsigned: only the update
// itself carries the key.
func (u *Updater) setup(ctx context.Context, name string) (*client, string, string, error) {
	if u.Logger == nil {
		u.Logger = slog.New(slog.DiscardHandler)
	}
	c := newClient(u.Timeout, nil, u.Logger)
	zone := u.Zone
	primary := ""
	if u.Primary != "" {
		primary = HostPort(u.Primary, 53)
	}
	if zone == "" {
		var ask []string
		if primary != "" {
			ask = append(ask, primary)
		}
		z, err := FindZone(ctx, dns.Fqdn(name), append(append(ask, u.Auth...), u.Resolvers...), c.timeout)
		if err != nil {
			return nil, "", "", err
		}
		zone = z
	}
	zone = dns.CanonicalName(zone)
	if primary == "" {
		p, err := u.findPrimary(ctx, c, zone)
		if err != nil {
			return nil, "", "", err
		}
		primary = p
	}
	u.Logger.Debug("dns update target", "zone", zone, "primary", primary, "key", u.Key)
	return c, zone, primary, nil
}

// findPrimary resolves the SOA MNAME of zone.
func (u *Updater) findPrimary(ctx context.Context, c *client, zone string) (string, error) {
	zname := strings.TrimSuffix(zone, ".")
	ask := append(normAddrs(u.Auth), normAddrs(u.Resolvers)...)
	if len(ask) == 0 {
		return "", hint.With(fmt.Errorf("find primary of %s: no server to ask", zname), "give the primary with --server ADDR[:PORT]")
	}
	for _, s := range ask {
		r, _, err := c.query(ctx, s, zone, dns.TypeSOA, true)
		if err != nil || len(r.Answer) == 0 {
			continue
		}
		soa, ok := r.Answer[0].(*dns.SOA)
		if !ok {
			continue
		}
		for _, t := range ask {
			if addrs := lookupAddrs(ctx, c, t, soa.Ns); len(addrs) > 0 {
				return HostPort(addrs[0], u.NSPort), nil
			}
		}
		return "", hint.With(fmt.Errorf("find primary of %s: no address for SOA MNAME %s", zname, soa.Ns), "give the primary with --server ADDR[:PORT]")
	}
	return "", hint.With(fmt.Errorf("find primary of %s: no server returned its SOA", zname), "give the primary with --server ADDR[:PORT]")
}

func lookupAddrs(ctx context.Context, c *client, server, name string) []string {
	var out []string
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		r, _, err := c.query(ctx, server, name, t, true)
		if err != nil {
			continue
		}
		for _, rr := range r.Answer {
			switch a := rr.(type) {
			case *dns.A:
				out = append(out, a.A.String())
			case *dns.AAAA:
				out = append(out, a.AAAA.String())
			}
		}
	}
	return out
}

// serial asks server for zone's SOA serial, requiring an authoritative answer.
func (u *Updater) serial(ctx context.Context, c *client, server, zone string) (uint32, error) {
	op := "soa " + strings.TrimSuffix(zone, ".")
	r, _, err := c.query(ctx, server, zone, dns.TypeSOA, false)
	if err != nil {
		return 0, netError(op, server, err)
	}
	if r.Rcode != dns.RcodeSuccess {
		return 0, hint.With(&RcodeError{Op: op, Server: server, Rcode: r.Rcode},
			"the server does not serve zone "+strings.TrimSuffix(zone, ".")+": check --zone and --server")
	}
	for _, rr := range r.Answer {
		if soa, ok := rr.(*dns.SOA); ok && r.Authoritative && dns.CanonicalName(soa.Hdr.Name) == zone {
			return soa.Serial, nil
		}
	}
	return 0, hint.With(fmt.Errorf("%s at %s: not authoritative (no SOA with the aa flag)", op, server),
		"the server does not serve zone "+strings.TrimSuffix(zone, ".")+": check --zone and --server")
}

// read returns name's sets of types as server serves them.
func (u *Updater) read(ctx context.Context, c *client, server, zone, name string, types []uint16) ([]RRset, error) {
	if !dns.IsSubDomain(zone, name) {
		return nil, hint.With(fmt.Errorf("%s is not in zone %s", name, zone), "check --zone")
	}
	var out []RRset
	for _, t := range types {
		op := strings.ToLower(dns.TypeToString[t]) + " " + strings.TrimSuffix(name, ".")
		r, _, err := c.query(ctx, server, name, t, false)
		if err != nil {
			return nil, netError(op, server, err)
		}
		if (r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError) || !r.Authoritative {
			return nil, newRcodeError(op, server, r.Rcode, false)
		}
		out = append(out, newRRset(name, t, r.Answer))
	}
	return out, nil
}

// send writes the pending change record, then sends the update with the
// old sets as prerequisites. On failure the record is removed.
func (u *Updater) send(ctx context.Context, c *client, primary string, ch *Change) error {
	m := new(dns.Msg)
	m.SetUpdate(ch.Zone)
	// Prerequisites, then every deletion, then the additions: a CNAME
	// must be gone before an A goes in beside it, and the other way round.
	for _, old := range ch.Old {
		hdr := []dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: ch.Name, Rrtype: old.typeCode(), Class: dns.ClassINET}}}
		if !old.Exists() {
			m.RRsetNotUsed(hdr)
			continue
		}
		rrs, err := old.rrs()
		if err != nil {
			return err
		}
		m.Used(rrs)
	}
	for _, old := range ch.Old {
		if old.Exists() {
			m.RemoveRRset([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: ch.Name, Rrtype: old.typeCode(), Class: dns.ClassINET}}})
		}
	}
	for _, n := range ch.New {
		rrs, err := n.rrs()
		if err != nil {
			return err
		}
		m.Insert(rrs)
	}
	if u.RecordPath != "" {
		if err := WriteChange(u.RecordPath, ch); err != nil {
			return fmt.Errorf("change record: %w", err)
		}
	}
	if u.beforeSend != nil {
		u.beforeSend()
	}
	err := u.exchangeUpdate(ctx, primary, ch.Zone, m)
	if err != nil {
		if u.RecordPath != "" {
			os.Remove(u.RecordPath)
		}
		return err
	}
	ch.Applied = time.Now().UTC()
	ch.Status = "applied"
	if s, err := u.serial(ctx, c, primary, ch.Zone); err == nil {
		ch.SerialAfter = s
	}
	u.Logger.Debug("update applied", "zone", ch.Zone, "name", ch.Name, "primary", primary, "serial", ch.SerialAfter)
	return u.writeRecord(ch)
}

func (u *Updater) writeRecord(ch *Change) error {
	if u.RecordPath == "" {
		return nil
	}
	if err := WriteChange(u.RecordPath, ch); err != nil {
		return fmt.Errorf("change record (the update was applied): %w", err)
	}
	return nil
}

// exchangeUpdate sends m signed over TCP and classifies the answer.
func (u *Updater) exchangeUpdate(ctx context.Context, primary, zone string, m *dns.Msg) error {
	op := "update " + strings.TrimSuffix(zone, ".")
	sc := newClient(u.Timeout, u.Key, u.Logger)
	r, _, err := sc.exchange(ctx, "tcp", primary, m)
	if err != nil {
		return netError(op, primary, err)
	}
	if rc := answerCode(r); rc != dns.RcodeSuccess {
		return newRcodeError(op, primary, rc, true)
	}
	return nil
}

// confirm polls every authoritative server until it serves serial
// SerialAfter (or later) and the new sets, or ConfirmTimeout passes.
func (u *Updater) confirm(ctx context.Context, c *client, ch *Change) (*Change, error) {
	if u.ConfirmTimeout < 0 {
		return ch, nil
	}
	wait := u.ConfirmTimeout
	if wait == 0 {
		wait = DefaultConfirmTimeout
	}
	servers := normAddrs(u.Auth)
	if len(servers) == 0 {
		servers = u.nsAddrs(ctx, c, ch.Primary, ch.Zone)
	}
	if !slices.Contains(servers, ch.Primary) && len(u.Auth) == 0 {
		servers = append([]string{ch.Primary}, servers...)
	}
	ch.Servers = make([]Confirmation, len(servers))
	for i, s := range servers {
		ch.Servers[i].Server = s
	}
	deadline := time.Now().Add(wait)
	for {
		pending := u.confirmRound(ctx, c, ch)
		if pending == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	last := ch.Applied
	var missing []string
	for _, s := range ch.Servers {
		if !s.Confirmed {
			missing = append(missing, s.Server)
		} else if s.At.After(last) {
			last = s.At
		}
	}
	ch.CachesExpire = last.Add(time.Duration(ch.MaxOldTTL) * time.Second)
	ch.Status = "confirmed"
	if len(missing) > 0 {
		ch.Status = "unconfirmed"
	}
	if err := u.writeRecord(ch); err != nil {
		return ch, err
	}
	if len(missing) > 0 {
		err := fmt.Errorf("update %s applied at %s but not served by %s within %s", strings.TrimSuffix(ch.Zone, "."), ch.Primary, strings.Join(missing, ", "), wait)
		return ch, hint.WithExit(hint.With(err, "check the secondaries' transfer from the primary (NOTIFY, allow-transfer, key), then `migrate dnscheck` the name"), hint.ExitPartial)
	}
	return ch, nil
}

// confirmRound checks the servers not yet confirmed; it returns how many remain.
func (u *Updater) confirmRound(ctx context.Context, c *client, ch *Change) int {
	pending := 0
	for i := range ch.Servers {
		s := &ch.Servers[i]
		if s.Confirmed {
			continue
		}
		if err := u.serves(ctx, c, s, ch); err != nil {
			s.Error = err.Error()
			pending++
			continue
		}
		s.Confirmed, s.At, s.Error = true, time.Now().UTC(), ""
	}
	return pending
}

// serves checks that one server has the new serial and sets.
func (u *Updater) serves(ctx context.Context, c *client, s *Confirmation, ch *Change) error {
	serial, err := u.serial(ctx, c, s.Server, ch.Zone)
	if err != nil {
		return err
	}
	s.Serial = serial
	if ch.SerialAfter != 0 && int32(serial-ch.SerialAfter) < 0 {
		return fmt.Errorf("serial %d, waiting for %d", serial, ch.SerialAfter)
	}
	var types []uint16
	for _, n := range ch.New {
		types = append(types, n.typeCode())
	}
	got, err := u.read(ctx, c, s.Server, ch.Zone, ch.Name, types)
	if err != nil {
		return err
	}
	for i, n := range ch.New {
		if !got[i].equal(n) {
			return fmt.Errorf("serves %s, want %s", got[i], n)
		}
	}
	return nil
}

// nsAddrs resolves the zone's NS names through the primary.
func (u *Updater) nsAddrs(ctx context.Context, c *client, primary, zone string) []string {
	var out []string
	for _, ns := range queryNS(ctx, c, primary, zone) {
		addrs := lookupAddrs(ctx, c, primary, ns)
		for _, r := range normAddrs(u.Resolvers) {
			if len(addrs) > 0 {
				break
			}
			addrs = lookupAddrs(ctx, c, r, ns)
		}
		for _, a := range addrs {
			out = append(out, HostPort(a, u.NSPort))
		}
	}
	return out
}

// parseValues turns command line values into rdata for typ.
func parseValues(typ uint16, values []string, zone string) ([]string, error) {
	if len(values) == 0 {
		return nil, errors.New("no value given")
	}
	var out []string
	switch typ {
	case dns.TypeA, dns.TypeAAAA:
		for _, v := range values {
			ip, err := netip.ParseAddr(v)
			if err != nil || ip.Is4() != (typ == dns.TypeA) {
				return nil, fmt.Errorf("%q is not an %s address", v, dns.TypeToString[typ])
			}
			out = append(out, ip.String())
		}
	case dns.TypeCNAME:
		if len(values) != 1 {
			return nil, errors.New("a CNAME takes exactly one target")
		}
		if _, ok := dns.IsDomainName(values[0]); !ok {
			return nil, fmt.Errorf("%q is not a host name", values[0])
		}
		out = append(out, absName(values[0], zone))
	case dns.TypeMX:
		f := strings.Fields(strings.ReplaceAll(strings.Join(values, " "), ":", " "))
		if len(f)%2 != 0 {
			return nil, errors.New("MX values are pairs: PREFERENCE HOST (e.g. 10 mail1 20 mail2)")
		}
		for i := 0; i < len(f); i += 2 {
			pref, err := strconv.ParseUint(f[i], 10, 16)
			if err != nil {
				return nil, fmt.Errorf("MX preference %q is not a number 0-65535", f[i])
			}
			out = append(out, fmt.Sprintf("%d %s", pref, absName(f[i+1], zone)))
		}
	case dns.TypeTXT:
		for _, v := range values {
			out = append(out, strconv.Quote(v))
		}
	}
	slices.Sort(out)
	return out, nil
}

// FindPrimary returns the primary updates go to: Primary when set, else
// the zone's SOA MNAME resolved through Auth or Resolvers.
func (u *Updater) FindPrimary(ctx context.Context) (string, error) {
	if u.Primary != "" {
		return HostPort(u.Primary, 53), nil
	}
	if u.Zone == "" {
		return "", errors.New("find primary: no zone")
	}
	return u.findPrimary(ctx, newClient(u.Timeout, nil, u.Logger), dns.CanonicalName(u.Zone))
}
