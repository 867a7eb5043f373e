package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func simpleCfg(listen string, backends ...string) string {
	return simpleCfgX(listen, 1, backends...)
}

func simpleCfgX(listen string, xhttp int, backends ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Alive 1\nListenHTTP\nAddress 127.0.0.1\nPort %s\nxHTTP %d\nService\n", listen, xhttp)
	for _, be := range backends {
		fmt.Fprintf(&b, "BackEnd\nAddress 127.0.0.1\nPort %s\nEnd\n", be)
	}
	b.WriteString("End\nEnd\n")
	return b.String()
}

func TestForwardBasic(t *testing.T) {
	var gotXFF, gotConn, gotProto, gotHost string
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotXFF, gotConn, gotProto, gotHost = r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Custom-Hop"), r.Header.Get("X-Forwarded-Proto"), r.Host
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Backend", "1")
		fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.Path, len(body))
	}))
	defer be.Close()
	lp := freePort(t)
	startProxy(t, simpleCfg(lp, portOf(be.URL)), nil)
	req, _ := http.NewRequest("POST", "http://127.0.0.1:"+lp+"/hello", strings.NewReader("abcdef"))
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	req.Header.Set("Connection", "X-Custom-Hop")
	req.Header.Set("X-Custom-Hop", "secret")
	req.Host = "www.example.com"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "POST /hello 6" || resp.Header.Get("X-Backend") != "1" {
		t.Fatalf("response %q %v", body, resp.Header)
	}
	if gotXFF != "127.0.0.1" || gotConn != "" || gotProto != "http" || gotHost != "www.example.com" {
		t.Fatalf("backend saw XFF=%q hop=%q proto=%q host=%q", gotXFF, gotConn, gotProto, gotHost)
	}
}

func TestKeepAliveAndChunked(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f := w.(http.Flusher)
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "part%d:%d;", i, len(body))
			f.Flush()
		}
	}))
	defer be.Close()
	lp := freePort(t)
	startProxy(t, simpleCfg(lp, portOf(be.URL)), nil)
	c, err := net.Dial("tcp", "127.0.0.1:"+lp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := 0; i < 3; i++ {
		fmt.Fprintf(c, "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if string(body) != "part0:8;part1:8;part2:8;" || resp.TransferEncoding[0] != "chunked" {
			t.Fatalf("request %d: body %q te %v", i, body, resp.TransferEncoding)
		}
	}
}

func rawRequest(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, req)
	b, _ := io.ReadAll(c)
	return string(b)
}

func TestRequestDefences(t *testing.T) {
	hits := 0
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits++ }))
	defer be.Close()
	lp := freePort(t)
	startProxy(t, simpleCfg(lp, portOf(be.URL)), nil)
	addr := "127.0.0.1:" + lp
	tests := []struct{ name, req, status string }{
		{"cl and te", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"},
		{"two lengths", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", "400"},
		{"bad chunk", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "400"},
		{"bad trailer", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\rGET / HTTP/1.1\r\n\r\n", "400"},
		{"te not chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", "400"},
		{"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", "400"},
		{"folding", "GET / HTTP/1.1\r\nHost: a\r\n x\r\n\r\n", "400"},
		{"no host", "GET / HTTP/1.1\r\n\r\n", "400"},
		{"long uri", "GET /" + strings.Repeat("a", 20000) + " HTTP/1.1\r\nHost: a\r\n\r\n", "414"},
		{"long header", "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("a", 20000) + "\r\n\r\n", "431"},
		{"many headers", "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X: y\r\n", 200) + "\r\n", "431"},
		{"method", "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", "501"},
		{"xhttp 1", "PROPFIND / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", "501"},
	}
	for _, tt := range tests {
		got := rawRequest(t, addr, tt.req)
		if !strings.HasPrefix(got, "HTTP/1.1 "+tt.status+" ") {
			t.Errorf("%s: got %q, want %s", tt.name, firstLine(got), tt.status)
		}
	}
	if hits != 0 {
		t.Errorf("backend saw %d refused requests", hits)
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\r\n")
	return l
}
