package dnscheck

import (
	"context"
	"errors"

	"github.com/miekg/dns"
)

// Probe checks, without changing anything, that the primary accepts signed
// updates for name's zone with the key: it sends an RFC 2136 update whose
// only content is the prerequisite "the zone's SOA exists". A wrong key
// gives BADSIG/BADKEY, a key not allowed to update gives REFUSED or
// NOTAUTH, exactly as a real update would. It returns the zone and primary.
func (u *Updater) Probe(ctx context.Context, name string) (zone, primary string, err error) {
	if u.Key == nil {
		return "", "", errors.New("probe: no tsig key")
	}
	_, zone, primary, err = u.setup(ctx, name)
	if err != nil {
		return "", "", err
	}
	m := new(dns.Msg)
	m.SetUpdate(zone)
	// Prerequisite: the SOA RRset exists (value independent).
	m.RRsetUsed([]dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET}}})
	if err := u.exchangeUpdate(ctx, primary, zone, m); err != nil {
		return zone, primary, err
	}
	return zone, primary, nil
}
