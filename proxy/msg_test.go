package proxy

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

func TestReadRequest(t *testing.T) {
	tests := []struct {
		in      string
		status  int // 0 = accepted
		cl      int64
		chunked bool
		keep    bool
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, -1, false, true},
		{"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, -1, false, true},
		{"GET / HTTP/1.0\r\n\r\n", 0, -1, false, false},
		{"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 0, -1, false, true},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nConnection: close\r\n\r\n", 0, 12, false, false},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 0, 5, false, true},
		{"POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: Chunked\r\n\r\n", 0, -1, true, true},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400, 0, false, false},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1,1\r\n\r\n", 400, 0, false, false},
		{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400, 0, false, false},
		{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400, 0, false, false},
		{"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, 0, false, false},
		{"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, 0, false, false},
		{"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, 0, false, false},
		{"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400, 0, false, false},
		{"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, 0, false, false},
		{"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400, 0, false, false},
	}
	for _, tt := range tests {
		var m msgHead
		err := m.readRequest(bufio.NewReaderSize(strings.NewReader(tt.in), clientBufSize))
		if tt.status != 0 {
			he, ok := err.(*httpError)
			if !ok || he.Status != tt.status {
				t.Errorf("%q: err %v, want %d", tt.in, err, tt.status)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if m.contentLength != tt.cl || m.chunked != tt.chunked || m.keepAlive() != tt.keep {
			t.Errorf("%q: cl %d chunked %v keep %v", tt.in, m.contentLength, m.chunked, m.keepAlive())
		}
	}
}

func TestParseChunkSize(t *testing.T) {
	for in, want := range map[string]int64{"0\r\n": 0, "1a\r\n": 26, "FF;name=v\r\n": 255, "10 \r\n": 16, "\r\n": -1, "x\r\n": -1,
		"1 2\r\n": -1, "1234567890abcdef0\r\n": -1, "-1\r\n": -1} {
		got, ok := parseChunkSize([]byte(in))
		if !ok {
			got = -1
		}
		if got != want {
			t.Errorf("%q: %d, want %d", in, got, want)
		}
	}
}

// FuzzRequest feeds arbitrary bytes to the request parser and the chunked
// body decoder: no panics, and accepted requests keep the framing rules.
func FuzzRequest(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Add([]byte("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nT: v\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: keep-alive, X-Hop\r\n\r\nabc"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var m msgHead
		br := bufio.NewReaderSize(bytes.NewReader(in), 256)
		if err := m.readRequest(br); err != nil {
			return
		}
		if m.chunked && m.contentLength >= 0 {
			t.Fatal("accepted both Content-Length and chunked")
		}
		if m.teOther {
			t.Fatal("accepted an unsupported Transfer-Encoding")
		}
		for _, h := range m.hdrs {
			if bytes.ContainsAny(m.bytes(h.name), " \t\r\n:") {
				t.Fatalf("bad header name %q", m.bytes(h.name))
			}
		}
		if m.chunked {
			var out bytes.Buffer
			dst := &endpoint{bw: bufio.NewWriter(&out)}
			src := &endpoint{br: br}
			copyChunked(dst, src, false, 0)
		}
	})
}

func TestHTTP10WithoutHost(t *testing.T) {
	var host string
	be := httptestServer(func(h string) { host = h })
	defer be.Close()
	lp := freePort(t)
	startProxy(t, simpleCfg(lp, portOf(be.URL)), nil)
	got := rawRequest(t, "127.0.0.1:"+lp, "GET / HTTP/1.0\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 200 ") || !strings.Contains(got, "Connection: close") || host != hostPort(be.URL) {
		t.Fatalf("got %q, backend saw Host %q", got, host)
	}
}
