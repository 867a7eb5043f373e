package dnscheck

import (
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestSetPlan(t *testing.T) {
	const z, n = "example.test.", "www.example.test."
	a := RRset{Name: n, Type: "A", TTL: 600, Data: []string{"192.0.2.10"}}
	cname := RRset{Name: n, Type: "CNAME", TTL: 120, Data: []string{"web.example.test."}}
	mx := RRset{Name: n, Type: "MX", TTL: 60, Data: []string{"10 mail.example.test."}}
	tests := []struct {
		name    string
		cur     []RRset
		typ     uint16
		values  []string
		ttl     uint32
		want    []string // RRset.String() of each planned set
		wantErr string
	}{
		{name: "A keeps ttl", cur: []RRset{a}, typ: dns.TypeA, values: []string{"198.51.100.7", "198.51.100.8"},
			want: []string{"www.example.test. 600 A 198.51.100.7, 198.51.100.8"}},
		{name: "A with ttl replaces cname", cur: []RRset{cname}, typ: dns.TypeA, values: []string{"198.51.100.7"}, ttl: 60,
			want: []string{"www.example.test. 60 A 198.51.100.7", "www.example.test. CNAME (none)"}},
		{name: "cname replaces A", cur: []RRset{a}, typ: dns.TypeCNAME, values: []string{"new"},
			want: []string{"www.example.test. 600 CNAME new.example.test.", "www.example.test. A (none)"}},
		{name: "cname beside MX", cur: []RRset{a, mx}, typ: dns.TypeCNAME, values: []string{"new"}, wantErr: "cannot sit beside"},
		{name: "MX pairs", typ: dns.TypeMX, values: []string{"20", "mail2", "10:mail1.example.test."},
			want: []string{"www.example.test. 300 MX 10 mail1.example.test., 20 mail2.example.test."}},
		{name: "MX odd", typ: dns.TypeMX, values: []string{"10"}, wantErr: "pairs"},
		{name: "A given v6", typ: dns.TypeA, values: []string{"2001:db8::1"}, wantErr: "not an A address"},
		{name: "AAAA", typ: dns.TypeAAAA, values: []string{"2001:db8::1"}, want: []string{"www.example.test. 300 AAAA 2001:db8::1"}},
		{name: "two cnames", typ: dns.TypeCNAME, values: []string{"a", "b"}, wantErr: "exactly one"},
		{name: "TXT", typ: dns.TypeTXT, values: []string{`v=spf1 -all`}, want: []string{`www.example.test. 300 TXT "v=spf1 -all"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := setPlan(z, tc.cur, n, tc.typ, tc.values, tc.ttl)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var s []string
			for _, g := range got {
				s = append(s, g.String())
				if _, err := g.rrs(); err != nil {
					t.Errorf("planned set does not parse: %v", err)
				}
			}
			if !slices.Equal(s, tc.want) {
				t.Fatalf("got %q\nwant %q", s, tc.want)
			}
		})
	}
}

func TestAbsName(t *testing.T) {
	for in, want := range map[string]string{
		"www": "www.example.test.", "WWW.Example.Test": "www.example.test.", "www.other.": "www.other.",
		"@": "example.test.", "a.b": "a.b.example.test.", "example.test": "example.test.",
	} {
		if got := absName(in, "example.test."); got != want {
			t.Errorf("absName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestChangeRecordRoundTrip(t *testing.T) {
	path := t.TempDir() + "/c.json"
	c := &Change{Version: ChangeVersion, Op: "set", Zone: "example.test.", Name: "www.example.test.",
		Old: []RRset{{Name: "www.example.test.", Type: "A", TTL: 5, Data: []string{"192.0.2.10"}}}, MaxOldTTL: 5}
	if err := WriteChange(path, c); err != nil {
		t.Fatal(err)
	}
	got, err := ReadChange(path)
	if err != nil || got.Old[0].Data[0] != "192.0.2.10" || got.MaxOldTTL != 5 {
		t.Fatalf("%v %+v", err, got)
	}
	c.Version = 99
	WriteChange(path, c)
	if _, err := ReadChange(path); err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Fatalf("want a version error, got %v", err)
	}
}

func TestHostPort(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1": "127.0.0.1:53", "127.0.0.1:5353": "127.0.0.1:5353", "::1": "[::1]:53", "[::1]:15353": "[::1]:15353",
	} {
		if got := HostPort(in, 53); got != want {
			t.Errorf("HostPort(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseExpectation(t *testing.T) {
	for in, want := range map[string]string{
		"www=192.0.2.1": "www 192.0.2.1", "WWW.example.test.=2001:DB8::1": "www.example.test. 2001:DB8::1", "app=Web": "app web",
		"www": "error", "=192.0.2.1": "error", "www=": "error", "www=a b": "error",
	} {
		e, err := ParseExpectation(in)
		got := e.Name + " " + e.Value
		if err != nil {
			got = "error"
		}
		if got != want {
			t.Errorf("ParseExpectation(%q) = %q, want %q", in, got, want)
		}
	}
}
