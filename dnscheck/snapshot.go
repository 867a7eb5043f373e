package dnscheck

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/migrate-tool/migrate/internal/hint"
)

// Snapshot is a whole zone as one server served it by AXFR.
type Snapshot struct {
	Zone    string    `json:"zone"`
	Server  string    `json:"server"`
	Serial  uint32    `json:"serial"`
	Time    time.Time `json:"time"`
	Records []dns.RR  `json:"-"`
}

// Transfer takes zone from server by AXFR, signed with key when given.
func Transfer(ctx context.Context, server, zone string, key *Key, timeout time.Duration) (*Snapshot, error) {
	zone = dns.CanonicalName(zone)
	server = HostPort(server, 53)
	op := "axfr " + strings.TrimSuffix(zone, ".")
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	m := new(dns.Msg)
	m.SetAxfr(zone)
	t := &dns.Transfer{DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout}
	if key != nil {
		t.TsigSecret = key.tsig()
		m.SetTsig(key.Name, key.Algorithm, 300, time.Now().Unix())
	}
	env, err := t.In(m, server)
	if err != nil {
		return nil, netError(op, server, err)
	}
	snap := &Snapshot{Zone: zone, Server: server, Time: time.Now().UTC()}
	for e := range env {
		if e.Error != nil {
			if errors.Is(e.Error, dns.ErrAuth) || errors.Is(e.Error, dns.ErrSig) {
				return nil, probeTSIG(ctx, op, server, zone, key, timeout, e.Error)
			}
			return nil, xfrError(op, server, e.Error)
		}
		snap.Records = append(snap.Records, e.RR...)
		if ctx.Err() != nil {
			go func() {
				for range env {
				}
			}()
			return nil, ctx.Err()
		}
	}
	if len(snap.Records) < 2 {
		return nil, hint.With(fmt.Errorf("%s at %s: empty transfer", op, server), "check the server serves the zone")
	}
	if soa, ok := snap.Records[0].(*dns.SOA); ok {
		snap.Serial = soa.Serial
	}
	snap.Records = snap.Records[:len(snap.Records)-1] // the closing SOA
	return snap, nil
}

// probeTSIG finds why a signed transfer failed verification: miekg/dns
// hides the server's answer, so a signed SOA query asks again.
func probeTSIG(ctx context.Context, op, server, zone string, key *Key, timeout time.Duration, xerr error) error {
	c := newClient(timeout, key, nil)
	m := new(dns.Msg)
	m.SetQuestion(zone, dns.TypeSOA)
	if r, _, err := c.exchange(ctx, "tcp", server, m); err == nil && answerCode(r) != dns.RcodeSuccess {
		return newRcodeError(op, server, answerCode(r), true)
	}
	return netError(op, server, fmt.Errorf("%w (the answer failed TSIG verification)", xerr))
}

// xfrError classifies an AXFR failure; miekg/dns reports refusals as
// "bad xfr rcode: N".
func xfrError(op, server string, err error) error {
	var rc int
	if _, scanErr := fmt.Sscanf(err.Error(), "dns: bad xfr rcode: %d", &rc); scanErr == nil {
		return newRcodeError(op, server, rc, false)
	}
	return netError(op, server, err)
}

// WriteTo writes the snapshot as a zone file.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "; zone %s serial %d from %s at %s\n", s.Zone, s.Serial, s.Server, s.Time.Format(time.RFC3339))
	fmt.Fprintf(&b, "$ORIGIN %s\n", s.Zone)
	for _, rr := range s.Records {
		b.WriteString(rr.String())
		b.WriteByte('\n')
	}
	return b.WriteTo(w)
}

// WriteFile writes the snapshot to path through a temp file and a rename.
func (s *Snapshot) WriteFile(path string) error {
	var b bytes.Buffer
	if _, err := s.WriteTo(&b); err != nil {
		return err
	}
	return writeFileAtomic(path, b.Bytes())
}

// ReadSnapshot reads a zone file written by WriteTo (any zone file works).
func ReadSnapshot(path string) (*Snapshot, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read snapshot: %w", err)
	}
	defer f.Close()
	s := &Snapshot{}
	br := bufio.NewReader(f)
	if first, _ := br.Peek(256); bytes.HasPrefix(first, []byte("; zone ")) {
		fmt.Sscanf(string(first), "; zone %s serial %d from %s", &s.Zone, &s.Serial, &s.Server)
	}
	zp := dns.NewZoneParser(br, s.Zone, path)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		s.Records = append(s.Records, rr)
		if soa, isSOA := rr.(*dns.SOA); isSOA && s.Zone == "" {
			s.Zone, s.Serial = dns.CanonicalName(soa.Hdr.Name), soa.Serial
		}
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", path, err)
	}
	if s.Zone == "" {
		return nil, fmt.Errorf("snapshot %s: no SOA record", path)
	}
	return s, nil
}

// Sets returns the snapshot's sets of name for the types a change edits
// (empty sets for types it has none of).
func (s *Snapshot) Sets(name string) []RRset {
	name = absName(name, s.Zone)
	var out []RRset
	for _, t := range editTypes {
		out = append(out, newRRset(name, t, s.Records))
	}
	return out
}
