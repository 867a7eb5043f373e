package dnscheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// ChangeVersion is the version of the change record format.
const ChangeVersion = 1

// Change is the record of one update: what was replaced, what was put in,
// and until when caches may still hold the old answer. It is written
// before the update is sent (Status "pending") and again after it.
type Change struct {
	Version      int       `json:"version"`
	Op           string    `json:"op"`     // "lower-ttl", "set" or "restore"
	Status       string    `json:"status"` // "pending", "unchanged", "applied", "confirmed" or "unconfirmed"
	Zone         string    `json:"zone"`
	Name         string    `json:"name"`
	Primary      string    `json:"primary"`
	KeyName      string    `json:"key_name,omitempty"`
	Created      time.Time `json:"created"`
	Applied      time.Time `json:"applied,omitzero"`
	SerialBefore uint32    `json:"serial_before"`
	SerialAfter  uint32    `json:"serial_after,omitempty"`
	Old          []RRset   `json:"old"` // the RRsets replaced, with their TTLs (empty Data: did not exist)
	New          []RRset   `json:"new"` // the RRsets put in their place (empty Data: deleted)
	// MaxOldTTL is the longest TTL among Old: how long a cache that fetched
	// the old answer just before the change may keep it.
	MaxOldTTL uint32 `json:"max_old_ttl"`
	// CachesExpire is when no cache can still hold the old answer: the
	// moment the last authoritative server served the new data (or Applied
	// when not confirmed) plus MaxOldTTL.
	CachesExpire time.Time      `json:"caches_expire,omitzero"`
	Servers      []Confirmation `json:"servers,omitempty"`
}

// RRset is the records of one name and type, with rdata in zone file text.
type RRset struct {
	Name string   `json:"name"`
	Type string   `json:"type"`
	TTL  uint32   `json:"ttl"`
	Data []string `json:"data"`
}

// Confirmation is what one authoritative server served after an update.
type Confirmation struct {
	Server    string    `json:"server"`
	Serial    uint32    `json:"serial"`
	Confirmed bool      `json:"confirmed"`
	At        time.Time `json:"at,omitzero"`
	Error     string    `json:"error,omitempty"`
}

// Exists reports whether the set has records.
func (s RRset) Exists() bool { return len(s.Data) > 0 }

func (s RRset) String() string {
	if !s.Exists() {
		return fmt.Sprintf("%s %s (none)", s.Name, s.Type)
	}
	return fmt.Sprintf("%s %d %s %s", s.Name, s.TTL, s.Type, strings.Join(s.Data, ", "))
}

// rrs turns the set into miekg/dns records.
func (s RRset) rrs() ([]dns.RR, error) {
	var out []dns.RR
	for _, d := range s.Data {
		rr, err := dns.NewRR(fmt.Sprintf("%s %d IN %s %s", s.Name, s.TTL, s.Type, d))
		if err != nil {
			return nil, fmt.Errorf("record %s %s %q: %w", s.Name, s.Type, d, err)
		}
		out = append(out, rr)
	}
	return out, nil
}

// typeCode is the numeric type of the set.
func (s RRset) typeCode() uint16 { return dns.StringToType[s.Type] }

// equal compares data and TTL (data order ignored).
func (s RRset) equal(o RRset) bool {
	a, b := slices.Clone(s.Data), slices.Clone(o.Data)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b) && (len(a) == 0 || s.TTL == o.TTL)
}

// newRRset builds the set of name/type from records (TTL of the first).
func newRRset(name string, typ uint16, rrs []dns.RR) RRset {
	s := RRset{Name: dns.CanonicalName(name), Type: dns.TypeToString[typ], Data: []string{}}
	for _, rr := range rrs {
		h := rr.Header()
		if h.Rrtype != typ || !strings.EqualFold(h.Name, name) {
			continue
		}
		if len(s.Data) == 0 {
			s.TTL = h.Ttl
		}
		s.TTL = min(s.TTL, h.Ttl)
		s.Data = append(s.Data, rdata(rr))
	}
	slices.Sort(s.Data)
	return s
}

func rdata(rr dns.RR) string {
	return strings.TrimSpace(strings.TrimPrefix(rr.String(), rr.Header().String()))
}

// WriteChange writes c to path as indented JSON through a temp file and a
// rename, creating the directory.
func WriteChange(path string, c *Change) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'))
}

// ReadChange reads a change record.
func ReadChange(path string) (*Change, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read change record: %w", err)
	}
	var c Change
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("change record %s: %w", path, err)
	}
	if c.Version != ChangeVersion {
		return nil, fmt.Errorf("change record %s: version %d, want %d", path, c.Version, ChangeVersion)
	}
	if c.Zone == "" || c.Name == "" {
		return nil, fmt.Errorf("change record %s: no zone or name", path)
	}
	return &c, nil
}

func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ErrNothingToChange is returned when the zone already holds what an
// update would put in.
var ErrNothingToChange = errors.New("nothing to change")
