package migrate

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/migrate-tool/migrate/dnscheck"
)

// DefaultLowTTL is the TTL the plan advises lowering records to before a
// cutover.
const DefaultLowTTL = 60 * time.Second

// planDNS checks the domains on the servers and works out the timing.
func planDNS(ctx context.Context, domains, servers []string, now time.Time, log *slog.Logger) *DNSSection {
	ds := &DNSSection{LowTTL: DefaultLowTTL}
	rep, err := dnscheck.Check(ctx, dnscheck.Query{Names: domains, Servers: servers, Timeout: 2 * time.Second, Logger: log})
	if err != nil {
		ds.Error = err.Error()
		return ds
	}
	dnsSection(ds, rep, now)
	// Mail for the zone goes by the apex's MX, which the names checked
	// may not carry.
	if mx, _ := ds.MXHosts(); len(mx) == 0 && rep.Zone != "" {
		apex, err := dnscheck.Check(ctx, dnscheck.Query{Names: []string{rep.Zone}, Zone: rep.Zone, Servers: servers, Timeout: 2 * time.Second, Logger: log})
		if err == nil {
			for _, s := range apex.Servers {
				if s.Error != "" && s.Serial == 0 {
					continue
				}
				for _, a := range s.Answers {
					if a.Type != "MX" {
						continue
					}
					for _, r := range a.Records {
						ds.Records = append(ds.Records, DNSRecord{Name: r.Name, Type: r.Type, TTL: time.Duration(r.TTL) * time.Second,
							Value: fmt.Sprintf("%d %s", r.Pref, r.Value)})
					}
				}
				break
			}
		}
	}
	return ds
}

// dnsSection fills ds from a check report.
func dnsSection(ds *DNSSection, rep *dnscheck.Report, now time.Time) {
	ds.Zone = rep.Zone
	ds.Consistent = true
	for _, f := range rep.Flags {
		if f.Severity == "error" {
			ds.Consistent = false
		}
		ds.Problems = append(ds.Problems, f.Kind+": "+f.Message)
	}
	seen := map[string]bool{}
	for _, s := range rep.Servers {
		ds.Servers = append(ds.Servers, DNSServer{Server: s.Server, NSName: s.NSName, Serial: s.Serial, Error: s.Error})
		if s.Error != "" && s.Serial == 0 {
			continue
		}
		for _, a := range s.Answers {
			for _, r := range append(slices.Clone(a.Chain), a.Records...) {
				v := r.Value
				if r.Type == "MX" {
					v = fmt.Sprintf("%d %s", r.Pref, r.Value)
				}
				k := r.Name + " " + r.Type + " " + v
				if seen[k] {
					continue
				}
				seen[k] = true
				ttl := time.Duration(r.TTL) * time.Second
				ds.Records = append(ds.Records, DNSRecord{Name: r.Name, Type: r.Type, TTL: ttl, Value: v})
				if r.Type == "A" || r.Type == "AAAA" || r.Type == "CNAME" {
					ds.MaxTTL = max(ds.MaxTTL, ttl)
				}
			}
		}
	}
	dnsTiming(ds, now)
}

// dnsTiming sets when to lower the TTLs and the earliest completion.
// Lowering now lets a cutover after now+MaxTTL leave only LowTTL of stale
// caches; a switch made right now is complete at now+MaxTTL.
func dnsTiming(ds *DNSSection, now time.Time) {
	ds.LowerBy = now
	if ds.MaxTTL <= ds.LowTTL {
		ds.CutoverAfter = now
		ds.EarliestComplete = now.Add(ds.MaxTTL)
		return
	}
	ds.CutoverAfter = now.Add(ds.MaxTTL)
	ds.EarliestComplete = now.Add(ds.MaxTTL)
}

// MXHosts returns the MX targets found, and whether they have at least
// two preferences.
func (ds *DNSSection) MXHosts() (hosts []string, backup bool) {
	prefs := map[string]bool{}
	for _, r := range ds.Records {
		if r.Type == "MX" {
			hosts = append(hosts, r.Value)
			var p int
			var h string
			fmt.Sscanf(r.Value, "%d %s", &p, &h)
			prefs[fmt.Sprint(p)] = true
		}
	}
	return hosts, len(prefs) > 1
}
