package dnscheck

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func flagKinds(rep *Report) []string {
	var k []string
	for _, f := range rep.Flags {
		k = append(k, f.Kind)
	}
	return k
}

func TestCheck(t *testing.T) {
	loop := "loop1 CNAME loop2\nloop2 CNAME loop1\n"
	tests := []struct {
		name      string
		servers   func(t *testing.T) []string
		names     []string
		expect    []Expectation
		wantOK    bool
		wantFlags []string // each must be raised
		noFlags   []string // none of these may be raised
	}{
		{name: "consistent", servers: func(t *testing.T) []string {
			return []string{newFake(t, "7", "").Addr, newFake(t, "7", "").Addr}
		}, names: []string{"www", "app", "@"}, wantOK: true, wantFlags: []string{FlagSingleMX},
			noFlags: []string{FlagSerialMismatch, FlagLongTTL, FlagLame, FlagNoAnswer}},
		{name: "serials differ", servers: func(t *testing.T) []string {
			return []string{newFake(t, "7", "").Addr, newFake(t, "7", "").Addr, newFake(t, "6", "").Addr}
		}, names: []string{"www"}, wantFlags: []string{FlagSerialMismatch}},
		{name: "lame without aa", servers: func(t *testing.T) []string {
			return []string{newFake(t, "7", "").Addr, newFake(t, "7", "", func(f *fakeServer) { f.notAA = true }).Addr}
		}, names: []string{"www"}, wantFlags: []string{FlagLame}},
		{name: "lame refused", servers: func(t *testing.T) []string {
			return []string{newFake(t, "7", "").Addr, newFake(t, "7", "", func(f *fakeServer) { f.rcode = dns.RcodeRefused }).Addr}
		}, names: []string{"www"}, wantFlags: []string{FlagLame}},
		{name: "no answer", servers: func(t *testing.T) []string {
			return []string{newFake(t, "7", "").Addr, silentServer(t)}
		}, names: []string{"www"}, wantFlags: []string{FlagNoAnswer}},
		{name: "cname loop", servers: func(t *testing.T) []string {
			return []string{newFake(t, "7", loop).Addr}
		}, names: []string{"loop1"}, wantFlags: []string{FlagCNAMELoop}},
		{name: "long ttl", servers: func(t *testing.T) []string {
			return []string{newFake(t, "7", "").Addr}
		}, names: []string{"long"}, wantOK: true, wantFlags: []string{FlagLongTTL}},
		{name: "ns sets differ", servers: func(t *testing.T) []string {
			return []string{newFake(t, "7", "").Addr, newFake(t, "7", "@ NS ns3\n").Addr}
		}, names: []string{"www"}, wantFlags: []string{FlagNSMismatch}},
		{name: "data differs", servers: func(t *testing.T) []string {
			return []string{newFake(t, "7", "").Addr, newFake(t, "7", "www A 192.0.2.12\n").Addr}
		}, names: []string{"www"}, wantFlags: []string{FlagDataMismatch}},
		{name: "expected", servers: func(t *testing.T) []string {
			return []string{newFake(t, "7", "").Addr}
		}, names: []string{"app"}, expect: []Expectation{{Name: "app", Value: "192.0.2.10"}, {Name: "app", Value: "www"}}, wantOK: true},
		{name: "not expected", servers: func(t *testing.T) []string {
			return []string{newFake(t, "7", "").Addr}
		}, names: []string{"www"}, expect: []Expectation{{Name: "www", Value: "198.51.100.7"}}, wantFlags: []string{FlagNotExpected}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := Query{Names: tc.names, Zone: "example.test", Servers: tc.servers(t), Expect: tc.expect, Timeout: 300 * time.Millisecond}
			rep, err := Check(context.Background(), q)
			if err != nil {
				t.Fatal(err)
			}
			got := flagKinds(rep)
			if rep.OK != tc.wantOK {
				t.Errorf("OK = %v, want %v (flags %+v)", rep.OK, tc.wantOK, rep.Flags)
			}
			for _, w := range tc.wantFlags {
				if !slices.Contains(got, w) {
					t.Errorf("flag %s not raised: %+v", w, rep.Flags)
				}
			}
			for _, w := range tc.noFlags {
				if slices.Contains(got, w) {
					t.Errorf("flag %s raised: %+v", w, rep.Flags)
				}
			}
		})
	}
}

func TestCheckCNAMEChainFollowed(t *testing.T) {
	f := newFake(t, "7", "a CNAME b\nb CNAME www\n")
	rep, err := Check(context.Background(), Query{Names: []string{"a"}, Zone: "example.test", Servers: []string{f.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	a := findAnswerT(rep.Servers[0], "a.example.test.", "A")
	if len(a.Chain) != 2 || a.Chain[1].Value != "www.example.test." || len(a.Records) != 1 || a.Records[0].Value != "192.0.2.10" || a.Loop {
		t.Fatalf("chain: %+v", a)
	}
}

func TestTruncationFallsBackToTCP(t *testing.T) {
	f := newFake(t, "7", "www TXT \""+strings.Repeat("x", 200)+"\"\n", func(f *fakeServer) { f.truncate = true })
	rep, err := Check(context.Background(), Query{Names: []string{"www"}, Zone: "example.test", Servers: []string{f.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	if a := findAnswerT(rep.Servers[0], "www.example.test.", "A"); len(a.Records) != 1 {
		t.Fatalf("A over tcp: %+v", a)
	}
	if a := findAnswerT(rep.Servers[0], "www.example.test.", "TXT"); len(a.Records) != 1 {
		t.Fatalf("TXT over tcp: %+v", a)
	}
	if f.tcp.Load() == 0 {
		t.Fatal("no query went over tcp")
	}
}

func TestCheckTimeoutIsPerQuery(t *testing.T) {
	start := time.Now()
	rep, err := Check(context.Background(), Query{Names: []string{"www"}, Zone: "example.test",
		Servers: []string{silentServer(t), silentServer(t), silentServer(t)}, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("three dead servers took %s: not concurrent", el)
	}
	for _, s := range rep.Servers {
		if !strings.Contains(s.Error, "timed out") {
			t.Errorf("%s: %q", s.Server, s.Error)
		}
	}
}

func TestDiscoverThroughResolver(t *testing.T) {
	// The "resolver" answers NS and the addresses of ns1/ns2; both are
	// 127.0.0.1/127.0.0.2 at the fake's port (127.0.0.2 may not exist:
	// then ns2 does not answer, which is flagged, not fatal).
	f := newFake(t, "7", "")
	_, port, _ := strings.Cut(f.Addr, ":")
	var p int
	for _, c := range port {
		p = p*10 + int(c-'0')
	}
	rep, err := Check(context.Background(), Query{Names: []string{"www.example.test"}, Resolvers: []string{f.Addr}, NSPort: p, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Zone != "example.test." || len(rep.Servers) != 2 || rep.Servers[0].NSName != "ns1.example.test." || rep.Servers[0].Serial != 7 {
		t.Fatalf("discovered %+v", rep.Servers)
	}
}

func TestNextRound(t *testing.T) {
	yes, no := true, false
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	exp := []Expectation{{Name: "www.example.test.", Value: "198.51.100.7"}}
	old := []Answer{{Name: "www.example.test.", Type: "A", Records: []Record{{TTL: 5, Value: "192.0.2.10"}}}}
	cached := []Answer{{Name: "www.example.test.", Type: "A", Records: []Record{{TTL: 2, Value: "192.0.2.10"}}}}
	r1 := &Report{Time: t0, Expect: exp,
		Servers:   []ServerResult{{Server: "p", Expected: &yes}, {Server: "s", Expected: &no, Answers: old}},
		Resolvers: []ServerResult{{Server: "r", Expected: &no, Answers: cached}}}
	st := nextRound(&WatchRound{}, 1, r1)
	if st.Done || !st.AuthSwitched.IsZero() || st.OldTTL != 5*time.Second || !st.OldTTLKnown || st.ResolverTTL["r"] != 2*time.Second {
		t.Fatalf("round 1: %+v", st)
	}
	r2 := &Report{Time: t0.Add(time.Second), Expect: exp,
		Servers:   []ServerResult{{Server: "p", Expected: &yes}, {Server: "s", Expected: &yes}},
		Resolvers: []ServerResult{{Server: "r", Expected: &no, Answers: cached}}}
	st = nextRound(st, 2, r2)
	if st.Done || !st.AuthSwitched.Equal(r2.Time) || !st.SafeAfter.Equal(r2.Time.Add(5*time.Second)) {
		t.Fatalf("round 2: %+v", st)
	}
	r3 := &Report{Time: t0.Add(3 * time.Second), Expect: exp,
		Servers:   []ServerResult{{Server: "p", Expected: &yes}, {Server: "s", Expected: &yes}},
		Resolvers: []ServerResult{{Server: "r", Expected: &yes}}}
	st = nextRound(st, 3, r3)
	if !st.Done || !st.SafeAfter.Equal(r2.Time.Add(5*time.Second)) || len(st.Pending) != 0 {
		t.Fatalf("round 3: %+v", st)
	}
}

func TestWatchSeesSwitch(t *testing.T) {
	a, b := newFake(t, "7", ""), newFake(t, "7", "")
	q := Query{Names: []string{"www"}, Zone: "example.test", Servers: []string{a.Addr, b.Addr},
		Expect: []Expectation{{Name: "www", Value: "198.51.100.7"}}, Timeout: 300 * time.Millisecond}
	rounds := 0
	switchTo := func(f *fakeServer) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.records = parseZone(t, strings.ReplaceAll(strings.ReplaceAll(testZone, "%SERIAL%", "8"), "192.0.2.10", "198.51.100.7"))
	}
	last, err := Watch(context.Background(), q, WatchOptions{Interval: 20 * time.Millisecond, Progress: func(r *WatchRound) {
		rounds++
		switch rounds {
		case 2:
			switchTo(a)
		case 4:
			switchTo(b)
		}
	}})
	if err != nil || !last.Done || last.Round != 5 || last.OldTTL != 60*time.Second {
		t.Fatalf("watch: %v %+v", err, last)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	q.Expect[0].Value = "203.0.113.1"
	if last, err := Watch(ctx, q, WatchOptions{Interval: 20 * time.Millisecond}); err == nil || last == nil || last.Done {
		t.Fatalf("watch that cannot finish: %v %+v", err, last)
	}
}

func findAnswerT(s ServerResult, name, typ string) Answer {
	for _, a := range s.Answers {
		if a.Name == name && a.Type == typ {
			return a
		}
	}
	return Answer{}
}
