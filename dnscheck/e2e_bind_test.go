//go:build e2e

package dnscheck

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/internal/hint"
)

// TestE2EBINDMove is a whole move of www on BIND 9 with Unbound in front:
// check, lower-ttl, set while watching the secondary catch up and the
// resolver's cache run out, then restore the old address.
func TestE2EBINDMove(t *testing.T) {
	b := startBIND(t, 1500*time.Millisecond) // the secondary lags 1.5 s
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	q := Query{Names: []string{"www", "app", "@"}, Zone: "example.test", Servers: []string{b.primary, b.secondary},
		Resolvers: []string{b.resolver}, Timeout: 2 * time.Second}

	rep, err := Check(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Servers[0].Serial != 1 || rep.Servers[1].Serial != 1 {
		t.Fatalf("initial check not consistent: %+v", rep.Flags)
	}
	if a := findAnswer(rep.Servers[1], "app.example.test.", "A"); len(a.Chain) != 1 || a.Records[0].Value != oldAddr {
		t.Fatalf("app CNAME chain on secondary: %+v", a)
	}
	if !hasFlag(rep, FlagSingleMX) {
		t.Errorf("single MX not flagged: %+v", rep.Flags)
	}

	// The primary is the SOA MNAME (ns1 → 127.0.0.1) found through Unbound.
	found, err := (&Updater{Zone: "example.test", Resolvers: []string{b.resolver}, NSPort: b.nsPort}).FindPrimary(ctx)
	if err != nil || found != b.primary {
		t.Fatalf("primary from SOA MNAME: %q %v", found, err)
	}
	// The authoritative servers are the NS set found through Unbound.
	rep, err = Check(ctx, Query{Names: []string{"www.example.test"}, Resolvers: []string{b.resolver}, NSPort: b.nsPort})
	if err != nil || !rep.OK || len(rep.Servers) != 2 || rep.Servers[0].Server != b.primary || rep.Servers[1].Server != b.secondary ||
		rep.Servers[1].NSName != "ns2.example.test." {
		t.Fatalf("servers from NS through the resolver: %v %+v", err, rep)
	}

	u := &Updater{Zone: "example.test", Primary: b.primary, Auth: []string{b.primary, b.secondary}, Key: b.key,
		Timeout: 2 * time.Second, ConfirmTimeout: 20 * time.Second, RecordPath: filepath.Join(b.dir, "lower.json")}
	byNS := *u
	byNS.Auth, byNS.NSPort = nil, b.nsPort
	lower, err := byNS.LowerTTL(ctx, "www", 3)
	if err != nil {
		t.Fatal(err)
	}
	if lower.Status != "confirmed" || lower.MaxOldTTL != 5 || lower.New[0].TTL != 3 || len(lower.Servers) != 2 {
		t.Fatalf("lower-ttl change: %+v", lower)
	}
	rec, err := ReadChange(u.RecordPath)
	if err != nil || rec.Status != "confirmed" || rec.Old[0].TTL != 5 || rec.Old[0].Data[0] != oldAddr {
		t.Fatalf("change record %+v: %v", rec, err)
	}

	// Let caches holding the 5 s answer expire, then fill Unbound's cache
	// with the old address at TTL 3.
	time.Sleep(time.Until(lower.CachesExpire))
	if rep, err = Check(ctx, Query{Names: []string{"www"}, Zone: "example.test", Resolvers: []string{b.resolver}, Servers: []string{b.primary}}); err != nil || findAnswer(rep.Resolvers[0], "www.example.test.", "A").Records[0].Value != oldAddr {
		t.Fatalf("resolver before the change: %v %+v", err, rep)
	}

	// set and watch at once.
	q.Expect = []Expectation{{Name: "www", Value: newAddr}}
	var rounds []*WatchRound
	var wg sync.WaitGroup
	var set *Change
	var setErr error
	u.RecordPath = filepath.Join(b.dir, "set.json")
	start := time.Now()
	wg.Go(func() { set, setErr = u.Set(ctx, "www", "A", []string{newAddr}, 3) })
	last, err := Watch(ctx, q, WatchOptions{Interval: 250 * time.Millisecond, OldTTL: 0,
		Progress: func(r *WatchRound) { rounds = append(rounds, r) }})
	wg.Wait()
	if err != nil || setErr != nil {
		t.Fatalf("watch: %v; set: %v", err, setErr)
	}
	if !last.Done || len(last.Pending) != 0 {
		t.Fatalf("watch ended without all serving: %+v", last)
	}
	if set.Status != "confirmed" || set.Old[0].Data[0] != oldAddr || set.New[0].Data[0] != newAddr {
		t.Fatalf("set change: %+v", set)
	}
	if log, _ := os.ReadFile(filepath.Join(b.dir, "named-primary.log")); !strings.Contains(string(log), "IXFR started: TSIG migrate-key") {
		t.Error("the secondary did not catch up by a TSIG-signed IXFR")
	}
	t.Logf("watch: %d rounds in %s", len(rounds), time.Since(start).Round(time.Millisecond))
	sawLag, sawResolverOld := false, false
	var ttls []time.Duration
	for _, r := range rounds {
		t.Logf("round %d: pending %v resolver ttl %v", r.Round, r.Pending, r.ResolverTTL)
		if r.Report.Servers[0].Expected != nil && *r.Report.Servers[0].Expected && slices.Contains(r.Pending, b.secondary) {
			sawLag = true
		}
		if ttl, ok := r.ResolverTTL[b.resolver]; ok {
			sawResolverOld = true
			if len(ttls) == 0 || ttls[len(ttls)-1] != ttl {
				ttls = append(ttls, ttl)
			}
		}
	}
	if !sawLag {
		t.Error("the watch never saw the primary new and the secondary still old")
	}
	if !sawResolverOld || len(ttls) < 2 || ttls[len(ttls)-1] >= ttls[0] {
		// The cached TTL must be seen counting down (3s, 2s, ...).
		t.Errorf("resolver TTL did not count down: %v", ttls)
	}
	if last.AuthSwitched.IsZero() || last.OldTTL != 3*time.Second || !last.OldTTLKnown ||
		last.SafeAfter.Before(last.AuthSwitched.Add(3*time.Second)) {
		t.Errorf("safe-after: switched %v old ttl %v safe %v", last.AuthSwitched, last.OldTTL, last.SafeAfter)
	}

	// restore from the change record brings the old address back everywhere.
	setRec, err := ReadChange(filepath.Join(b.dir, "set.json"))
	if err != nil {
		t.Fatal(err)
	}
	u.RecordPath = filepath.Join(b.dir, "restore.json")
	back, err := u.Restore(ctx, setRec)
	if err != nil || back.Status != "confirmed" {
		t.Fatalf("restore: %v %+v", err, back)
	}
	rep, err = Check(ctx, Query{Names: []string{"www"}, Zone: "example.test", Servers: []string{b.primary, b.secondary},
		Expect: []Expectation{{Name: "www", Value: oldAddr}}})
	if err != nil || !rep.OK {
		t.Fatalf("after restore: %v %+v", err, rep.Flags)
	}

	// A second restore of the same record: the zone no longer holds what
	// the record put in, so the prerequisite fails and nothing changes.
	before := zoneState(t, b)
	u.RecordPath = filepath.Join(b.dir, "restore2.json")
	_, err = u.Restore(ctx, setRec)
	re, ok := errorsAsRcode(err)
	if !ok || !re.PrerequisiteFailed() || !strings.Contains(err.Error(), b.primary) || hint.Of(err) == "" {
		t.Fatalf("stale restore: %v", err)
	}
	if after := zoneState(t, b); after != before {
		t.Fatalf("zone changed by a failed update:\n%s\n---\n%s", before, after)
	}
	if _, err := os.Stat(u.RecordPath); !os.IsNotExist(err) {
		t.Errorf("failed update left its change record: %v", err)
	}

	// snapshot by AXFR and restore www from it.
	snap, err := Transfer(ctx, b.primary, e2eZone, b.key, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(b.dir, "snap.zone")
	if err := snap.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Set(ctx, "www", "CNAME", []string{"mail"}, 3); err != nil {
		t.Fatal(err)
	}
	snap2, err := ReadSnapshot(path)
	if err != nil || snap2.Serial != snap.Serial || snap2.Zone != e2eZone {
		t.Fatalf("read snapshot: %v %+v", err, snap2)
	}
	u.RecordPath = filepath.Join(b.dir, "from-snap.json")
	if _, err := u.RestoreSets(ctx, "www", snap2.Sets("www")); err != nil {
		t.Fatal(err)
	}
	if after := zoneState(t, b); !strings.Contains(after, "www.example.test.\t3\tIN\tA\t"+oldAddr) || strings.Contains(after, "www.example.test.\t3\tIN\tCNAME") {
		t.Fatalf("www not restored from the snapshot:\n%s", after)
	}
}

func findAnswer(s ServerResult, name, typ string) Answer {
	for _, a := range s.Answers {
		if a.Name == name && a.Type == typ {
			return a
		}
	}
	return Answer{}
}

func hasFlag(rep *Report, kind string) bool {
	return slices.ContainsFunc(rep.Flags, func(f Flag) bool { return f.Kind == kind })
}
