package accesslog

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var utc = time.UTC

func fixedNow() time.Time { return time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC) }

type sample struct {
	name   string
	format Format // expected (detected) format
	line   string
	want   Record
}

var samples = []sample{
	{"apache common", Common,
		`192.0.2.10 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326`,
		Record{Time: time.Date(2000, 10, 10, 20, 55, 36, 0, utc), Client: "192.0.2.10", Method: "GET",
			Path: "/apache_pb.gif", Status: 200, Bytes: 2326}},
	{"apache common no bytes", Common,
		`2001:db8::1 - - [10/Oct/2000:13:55:36 +0000] "HEAD / HTTP/1.1" 304 -`,
		Record{Time: time.Date(2000, 10, 10, 13, 55, 36, 0, utc), Client: "2001:db8::1", Method: "HEAD",
			Path: "/", Status: 304}},
	{"apache combined debian %O", Combined,
		`198.51.100.7 - - [21/Nov/2026:10:00:01 +0100] "GET /index.html HTTP/1.1" 200 3380 "https://example.com/" "Mozilla/5.0 (X11; Linux x86_64)"`,
		Record{Time: time.Date(2026, 11, 21, 9, 0, 1, 0, utc), Client: "198.51.100.7", Method: "GET",
			Path: "/index.html", Status: 200, Bytes: 3380, Referer: "https://example.com/",
			UserAgent: "Mozilla/5.0 (X11; Linux x86_64)"}},
	{"nginx combined escaped quote", Combined,
		`203.0.113.5 - alice [21/Nov/2026:10:00:02 +0000] "POST /api?q=\x22x\x22 HTTP/2.0" 201 0 "-" "curl/8.5.0 \"quoted\""`,
		Record{Time: time.Date(2026, 11, 21, 10, 0, 2, 0, utc), Client: "203.0.113.5", Method: "POST",
			Path: `/api?q=\x22x\x22`, Status: 201, Bytes: 0, UserAgent: `curl/8.5.0 \"quoted\"`}},
	{"nginx combined junk request", Combined,
		`203.0.113.9 - - [21/Nov/2026:10:00:03 +0000] "\x16\x03\x01\x02\x00\x01" 400 157 "-" "-"`,
		Record{Time: time.Date(2026, 11, 21, 10, 0, 3, 0, utc), Client: "203.0.113.9", Status: 400, Bytes: 157}},
	{"apache vhost_combined", VhostCombined,
		`www.example.com:443 192.0.2.44 - - [21/Nov/2026:10:00:04 +0000] "GET /a HTTP/1.1" 200 512 "-" "Wget/1.21"`,
		Record{Time: time.Date(2026, 11, 21, 10, 0, 4, 0, utc), Client: "192.0.2.44", Host: "www.example.com",
			Method: "GET", Path: "/a", Status: 200, Bytes: 512, UserAgent: "Wget/1.21"}},
	{"pound 2 level 1 syslog", Pound1,
		`Nov 21 10:00:05 old pound: 192.0.2.1 GET /x HTTP/1.1 - HTTP/1.1 200 OK`,
		Record{Time: time.Date(2026, 11, 21, 10, 0, 5, 0, utc), Client: "192.0.2.1", Method: "GET", Path: "/x", Status: 200}},
	{"pound level 1 no syslog", Pound1,
		`192.0.2.1 GET /x?a=b HTTP/1.0 - HTTP/1.0 404 Not Found`,
		Record{Client: "192.0.2.1", Method: "GET", Path: "/x?a=b", Status: 404}},
	{"pound level 1 space in request", Pound1,
		`192.0.2.1 GET /a - b HTTP/1.1 - HTTP/1.1 400 Bad Request`,
		Record{Client: "192.0.2.1", Method: "GET", Path: "/a - b", Status: 400}},
	{"pound 4 level 1 special backend", Pound1,
		`192.0.2.1 GET /old HTTP/1.1 - 301 Moved Permanently`,
		Record{Client: "192.0.2.1", Method: "GET", Path: "/old", Status: 301}},
	{"pound 2 redirect", Pound1,
		`192.0.2.1 GET /old HTTP/1.1 - REDIRECT https://new.example/old`,
		Record{Client: "192.0.2.1", Method: "GET", Path: "/old"}},
	{"pound level 2 with host", Pound2,
		`Nov 21 10:00:06 old pound[812]: 192.0.2.2 GET / HTTP/1.1 - HTTP/1.1 200 OK (www.example.com:80/web -> 10.0.0.5:8080) 0.003 sec`,
		Record{Time: time.Date(2026, 11, 21, 10, 0, 6, 0, utc), Client: "192.0.2.2", Method: "GET", Path: "/",
			Status: 200, Host: "www.example.com"}},
	{"pound level 2 without host", Pound2,
		`192.0.2.2 GET / HTTP/1.1 - HTTP/1.1 503 Service Unavailable (- -> 10.0.0.5:8080) 0.100 sec`,
		Record{Client: "192.0.2.2", Method: "GET", Path: "/", Status: 503}},
	{"pound level 3 syslog", Pound3,
		`Nov 21 10:00:07 old pound: www.example.com 192.0.2.3 - - [21/Nov/2026:10:00:07 +0000] "GET /p HTTP/1.1" 200 1234 "" "curl/8"`,
		Record{Time: time.Date(2026, 11, 21, 10, 0, 7, 0, utc), Client: "192.0.2.3", Host: "www.example.com",
			Method: "GET", Path: "/p", Status: 200, Bytes: 1234, UserAgent: "curl/8"}},
	{"pound level 4 syslog", Pound4,
		`Nov 21 10:00:08 old pound: 192.0.2.4 - - [21/Nov/2026:10:00:08 +0000] "GET /q HTTP/1.1" 200 - "" ""`,
		Record{Time: time.Date(2026, 11, 21, 10, 0, 8, 0, utc), Client: "192.0.2.4", Method: "GET", Path: "/q", Status: 200}},
	{"pound level 5", Pound5,
		`www.example.com:80 192.0.2.5 - - [21/Nov/2026:10:00:09 +0000] "GET /r HTTP/1.1" 200 99 "-" "curl/8" (web -> 10.0.0.5:8080) 0.012 sec`,
		Record{Time: time.Date(2026, 11, 21, 10, 0, 9, 0, utc), Client: "192.0.2.5", Host: "www.example.com",
			Method: "GET", Path: "/r", Status: 200, Bytes: 99, UserAgent: "curl/8"}},
	{"pound level 5 rsyslog iso", Pound5,
		`2026-11-21T10:00:10.123456+00:00 old pound[9]: - 192.0.2.6 - bob [21/Nov/2026:10:00:10 +0000] "PUT /s HTTP/1.1" 204 - "" "" (- -> 10.0.0.5:8080) 1.500 sec`,
		Record{Time: time.Date(2026, 11, 21, 10, 0, 10, 0, utc), Client: "192.0.2.6", Method: "PUT", Path: "/s", Status: 204}},
	{"haproxy httplog", HAProxy,
		`Nov 21 10:00:11 lb haproxy[14389]: 192.0.2.20:33317 [21/Nov/2026:10:00:11.655] http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 {1wt.eu} {} "GET /index.html HTTP/1.1"`,
		Record{Time: time.Date(2026, 11, 21, 10, 0, 11, 655e6, utc), Client: "192.0.2.20", Method: "GET",
			Path: "/index.html", Status: 200, Bytes: 2750}},
	{"haproxy rfc5424", HAProxy,
		`<134>1 2026-11-21T10:00:14.250Z lb haproxy 4242 - - 192.0.2.22:5000 [21/Nov/2026:10:00:14.250] fe be/s1 0/0/0/1/1 200 10 - - ---- 1/1/0/0/0 0/0 "GET / HTTP/1.1"`,
		Record{Time: time.Date(2026, 11, 21, 10, 0, 14, 250e6, utc), Client: "192.0.2.22", Method: "GET",
			Path: "/", Status: 200, Bytes: 10}},
	{"pound level 1 rfc5424", Pound1,
		`<150>1 2026-11-21T11:00:00+01:00 old pound 77 - - 192.0.2.9 GET /y HTTP/1.1 - HTTP/1.1 200 OK`,
		Record{Time: time.Date(2026, 11, 21, 10, 0, 0, 0, utc), Client: "192.0.2.9", Method: "GET", Path: "/y", Status: 200}},
	{"haproxy httpslog", HAProxy,
		`192.0.2.21:4711 [21/Nov/2026:10:00:13.001] https-in~ web/s1 0/0/1/2/3 304 150 - - ---- 2/2/0/0/0 0/0 "GET /c.css HTTP/2.0" 0/0/0/0/0 old/TLSv1.3/TLS_AES_256_GCM_SHA384`,
		Record{Time: time.Date(2026, 11, 21, 10, 0, 13, 1e6, utc), Client: "192.0.2.21", Method: "GET",
			Path: "/c.css", Status: 304, Bytes: 150}},
	{"haproxy httplog no headers, ipv6, bad req", HAProxy,
		`<134>Nov 21 10:00:12 lb haproxy[1]: ::1:4242 [21/Nov/2026:10:00:12.000] fe~ fe/<NOSRV> -1/-1/-1/-1/+0 -1 +188 - - PR-- 0/0/0/0/0 0/0 "<BADREQ>"`,
		Record{Time: time.Date(2026, 11, 21, 10, 0, 12, 0, utc), Client: "::1", Status: -1, Bytes: 188}},
}

func sampleOf(t *testing.T, f Format) sample {
	for _, s := range samples {
		if s.format == f {
			return s
		}
	}
	t.Fatalf("no sample in %s", f)
	return sample{}
}

func newTestParser(t testing.TB, name string) *Parser {
	t.Helper()
	if name == "skip-path" || name == "drain" {
		name = ""
	}
	p, err := NewParser(name, Options{Location: utc, Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseSamples(t *testing.T) {
	for _, s := range samples {
		t.Run(s.name, func(t *testing.T) {
			for _, mode := range []string{"auto", string(s.format), "skip-path", "drain"} {
				p := newTestParser(t, mode)
				switch mode {
				case "skip-path":
					p, _ = NewParser("", Options{Location: utc, Now: fixedNow, SkipPath: true})
				case "drain": // named format: the fast path that reads no further than the size
					p, _ = NewParser(string(s.format), Options{Location: utc, Now: fixedNow, SkipPath: true, SkipAgent: true})
				}
				var r Record
				if err := p.Parse([]byte(s.line), &r); err != nil {
					t.Fatalf("%s: Parse: %v", mode, err)
				}
				want := s.want
				if mode == "skip-path" || mode == "drain" {
					want.Path = ""
				}
				if mode == "drain" {
					want.UserAgent, want.Referer = "", ""
				}
				want.Format = s.format
				want.Addr, _ = netip.ParseAddr(want.Client)
				if !r.Time.Equal(want.Time) {
					t.Errorf("%s: time %v, want %v", mode, r.Time, want.Time)
				}
				r.Time, want.Time = time.Time{}, time.Time{}
				if r != want {
					t.Errorf("%s:\n got %+v\nwant %+v", mode, r, want)
				}
			}
		})
	}
}

func TestDetect(t *testing.T) {
	for _, s := range samples {
		lines := [][]byte{[]byte("garbage line"), []byte(s.line), []byte(s.line)}
		got, err := Detect(lines)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got != s.format {
			t.Errorf("%s: Detect = %s, want %s", s.name, got, s.format)
		}
	}
	if _, err := Detect([][]byte{[]byte("hello"), []byte("")}); err == nil {
		t.Fatal("Detect of junk succeeded")
	}
}

func TestDetectLocks(t *testing.T) {
	p := newTestParser(t, "")
	var r Record
	line := []byte(sampleOf(t, Combined).line)
	for i := 0; i < 8; i++ {
		if err := p.Parse(line, &r); err != nil {
			t.Fatal(err)
		}
	}
	if p.Format() != Combined {
		t.Fatalf("format after 8 lines = %q", p.Format())
	}
	// Locked: a line in another format no longer parses.
	if err := p.Parse([]byte(sampleOf(t, HAProxy).line), &r); !errors.Is(err, ErrNoMatch) {
		t.Fatalf("locked parser accepted a haproxy line: %v", err)
	}
}

func TestWrongFormatRejected(t *testing.T) {
	bad := []string{
		"",
		"-",
		`192.0.2.1 - - [32/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 1`,
		`192.0.2.1 - - [10/Foo/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 1`,
		`192.0.2.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 2000 1`,
		`192.0.2.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0 200 1`,
		`Nov 21 10:00:05 old kernel: something happened`,
	}
	for _, line := range bad {
		p := newTestParser(t, "auto")
		var r Record
		if err := p.Parse([]byte(line), &r); !errors.Is(err, ErrNoMatch) {
			t.Errorf("%q: err = %v, record %+v", line, err, r)
		}
	}
}

func TestLookupFormat(t *testing.T) {
	for in, want := range map[string]Format{"": "", "auto": "", "nginx": Combined, "Pound-Detailed": Pound5,
		"httplog": HAProxy, "pound3": Pound3, "vhost_combined": VhostCombined} {
		got, err := LookupFormat(in)
		if err != nil || got != want {
			t.Errorf("LookupFormat(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	_, err := LookupFormat("iis")
	if err == nil || err.Error() != `unknown log format "iis"` {
		t.Fatalf("err = %v", err)
	}
}

func TestSyslogYearRollover(t *testing.T) {
	p, _ := NewParser("pound1", Options{Location: utc,
		Now: func() time.Time { return time.Date(2027, 1, 1, 0, 5, 0, 0, utc) }})
	var r Record
	if err := p.Parse([]byte(`Dec 31 23:59:59 h pound: 192.0.2.1 GET / HTTP/1.1 - HTTP/1.1 200 OK`), &r); err != nil {
		t.Fatal(err)
	}
	if r.Time.Year() != 2026 {
		t.Fatalf("year = %d, want 2026", r.Time.Year())
	}
}

func TestReader(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 5; i++ {
		b.WriteString(samples[2].line + "\n")
	}
	b.WriteString("not a log line\n")
	b.WriteString(samples[2].line) // no final newline
	p := newTestParser(t, "")
	rd := NewReader(strings.NewReader(b.String()), p)
	n := 0
	for rd.Next() {
		if rd.Record().Status != 200 {
			t.Fatal("bad record")
		}
		n++
	}
	if rd.Err() != nil || n != 6 || rd.Skipped != 1 || rd.Lines != 7 {
		t.Fatalf("n=%d skipped=%d lines=%d err=%v", n, rd.Skipped, rd.Lines, rd.Err())
	}
}

func TestParseAllocs(t *testing.T) {
	for _, s := range samples {
		p, _ := NewParser(string(s.format), Options{Location: utc, Now: fixedNow, SkipPath: true, SkipAgent: s.name[0] == 'a'})
		line := []byte(s.line)
		var r Record
		_ = p.Parse(line, &r) // warm the caches
		allocs := testing.AllocsPerRun(100, func() { _ = p.Parse(line, &r) })
		if allocs != 0 {
			t.Errorf("%s: %.1f allocs per line with SkipPath", s.name, allocs)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range samples {
		f.Add(s.line, "")
		f.Add(s.line, string(s.format))
	}
	f.Add(`"\\\"`, "combined")
	f.Fuzz(func(t *testing.T, line, format string) {
		if _, err := LookupFormat(format); err != nil {
			format = ""
		}
		p, err := NewParser(format, Options{Location: utc, Now: fixedNow, DetectLines: 1})
		if err != nil {
			t.Fatal(err)
		}
		var r Record
		if err := p.Parse([]byte(line), &r); err != nil {
			if !errors.Is(err, ErrNoMatch) || r != (Record{}) {
				t.Fatalf("failed parse: err %v, record not cleared: %+v", err, r)
			}
			return
		}
		if r.Format == "" {
			t.Fatal("parsed record without a format")
		}
		if r.Status < -1 || r.Status > 999 || r.Bytes < 0 {
			t.Fatalf("out of range: %+v", r)
		}
		// Parsing is deterministic and the parser is reusable.
		var r2 Record
		if err := p.Parse([]byte(line), &r2); err != nil || r2 != r {
			t.Fatalf("second parse differs: %v %+v vs %+v", err, r2, r)
		}
	})
}

func TestBatchKeepsOrder(t *testing.T) {
	var lines [][]byte
	for i := 0; i < 3000; i++ {
		s := samples[2+i%2] // combined, alternating two lines
		if i == 1234 {
			lines = append(lines, []byte("junk"))
			continue
		}
		lines = append(lines, []byte(s.line))
	}
	b, err := NewBatch("", Options{Location: utc, Now: fixedNow}, 3)
	if err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 2; round++ {
		var got []string
		skipped := b.Parse(lines, func(r *Record) { got = append(got, r.Client) })
		if skipped != 1 || len(got) != 2999 {
			t.Fatalf("skipped %d, got %d", skipped, len(got))
		}
		for i, c := range got {
			j := i
			if i >= 1234 {
				j++
			}
			if want := []string{"198.51.100.7", "203.0.113.5"}[j%2]; c != want {
				t.Fatalf("record %d: client %s, want %s", i, c, want)
			}
		}
	}
	if b.Format() != Combined {
		t.Fatalf("Format = %q", b.Format())
	}
	if n := b.Parse(lines[:3], func(*Record) {}); n != 0 {
		t.Fatalf("small batch skipped %d", n)
	}
}
