package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

func named(name string) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c := r.URL.Query().Get("setcookie"); c != "" {
			http.SetCookie(w, &http.Cookie{Name: "sid", Value: c})
		}
		if r.URL.Path == "/redirect" {
			w.Header().Set("Location", "http://"+r.Host+"/target")
			w.WriteHeader(302)
			return
		}
		fmt.Fprintf(w, "%s|%s|%s|%s", name, r.Header.Get("X-Added"), r.Header.Get("X-Set"), r.Header.Get("X-Secret"))
	}))
}

func body(t *testing.T, c *http.Client, req *http.Request) (string, *http.Response) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return string(b), resp
}

func TestServiceConditions(t *testing.T) {
	a, b, c, d := named("a"), named("b"), named("c"), named("d")
	defer a.Close()
	defer b.Close()
	defer c.Close()
	defer d.Close()
	lp := freePort(t)
	src := fmt.Sprintf(`ListenHTTP
Address 127.0.0.1
Port %s
Service
  Host "api.example.com"
  Path -beg "/v1/"
  BackEnd
    Address 127.0.0.1
    Port %s
  End
End
Service
  Match OR
    URL "\?x=1$"
    Header "^X-Pick: b"
  End
  HeadDeny "^User-Agent: evil"
  BackEnd
    Address 127.0.0.1
    Port %s
  End
End
Service
  Not Host -re "\.org$"
  BackEnd
    Address 127.0.0.1
    Port %s
  End
End
Service
  BackEnd
    Address 127.0.0.1
    Port %s
  End
End
End
`, lp, portOf(a.URL), portOf(b.URL), portOf(c.URL), portOf(d.URL))
	startProxy(t, src, nil)
	tests := []struct {
		host, path, hdr, want string
	}{
		{"API.example.com:8080", "/v1/users", "", "a"},
		{"api.example.com", "/v2/users", "", "c"},
		{"x.org", "/p?x=1", "", "b"},
		{"x.org", "/p", "X-Pick: b", "b"},
		{"x.org", "/p", "User-Agent: evil", "d"},
		{"x.com", "/p", "", "c"},
		{"x.org", "/p", "", "d"},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest("GET", "http://127.0.0.1:"+lp+tt.path, nil)
		req.Host = tt.host
		if tt.hdr != "" {
			k, v, _ := strings.Cut(tt.hdr, ": ")
			req.Header.Set(k, v)
		}
		got, _ := body(t, http.DefaultClient, req)
		if !strings.HasPrefix(got, tt.want+"|") {
			t.Errorf("%s%s %q -> %q, want %s", tt.host, tt.path, tt.hdr, got, tt.want)
		}
	}
}

func TestSessions(t *testing.T) {
	a, b := named("a"), named("b")
	defer a.Close()
	defer b.Close()
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("user:pw"))
	tests := []struct {
		typ, id string
		set     func(r *http.Request, key string)
	}{
		{"IP", "", func(r *http.Request, key string) {}},
		{"BASIC", "", func(r *http.Request, key string) { r.Header.Set("Authorization", basic+key) }},
		{"URL", "sid", func(r *http.Request, key string) { r.URL.RawQuery = "sid=" + key }},
		{"PARM", "", func(r *http.Request, key string) { r.URL.Path = "/p;" + key }},
		{"HEADER", "X-Session", func(r *http.Request, key string) { r.Header.Set("X-Session", key) }},
		{"COOKIE", "sid", func(r *http.Request, key string) { r.AddCookie(&http.Cookie{Name: "sid", Value: key}) }},
	}
	for _, tt := range tests {
		t.Run(tt.typ, func(t *testing.T) {
			lp := freePort(t)
			id := ""
			if tt.id != "" {
				id = "ID \"" + tt.id + "\"\n"
			}
			src := strings.Replace(simpleCfg(lp, portOf(a.URL), portOf(b.URL)), "End\nEnd\nEnd\n",
				"End\nSession\nType "+tt.typ+"\nTTL 30\n"+id+"End\nEnd\nEnd\n", 1)
			startProxy(t, src, nil)
			for k := 0; k < 4; k++ {
				key := fmt.Sprint("k", k)
				if tt.typ == "COOKIE" {
					// The backend opens the session with Set-Cookie.
					req, _ := http.NewRequest("GET", "http://127.0.0.1:"+lp+"/?setcookie="+key, nil)
					first, _ := body(t, http.DefaultClient, req)
					for i := 0; i < 10; i++ {
						req, _ := http.NewRequest("GET", "http://127.0.0.1:"+lp+"/", nil)
						tt.set(req, key)
						if got, _ := body(t, http.DefaultClient, req); got[:1] != first[:1] {
							t.Fatalf("key %s: request %d went to %s, session on %s", key, i, got[:1], first[:1])
						}
					}
					continue
				}
				var first string
				for i := 0; i < 10; i++ {
					req, _ := http.NewRequest("GET", "http://127.0.0.1:"+lp+"/p", nil)
					tt.set(req, key)
					got, _ := body(t, &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, req)
					if i == 0 {
						first = got
					} else if got != first {
						t.Fatalf("key %s: request %d went to %q, session on %q", key, i, got, first)
					}
				}
			}
		})
	}
}

func TestSessionID(t *testing.T) {
	a, b := named("a"), named("b")
	defer a.Close()
	defer b.Close()
	lp := freePort(t)
	src := strings.Replace(simpleCfg(lp, portOf(a.URL), portOf(b.URL)), "End\nEnd\nEnd\n", "End\nSession\nType ID\nTTL 30\nEnd\nEnd\nEnd\n", 1)
	startProxy(t, src, nil)
	req, _ := http.NewRequest("GET", "http://127.0.0.1:"+lp+"/", nil)
	first, resp := body(t, http.DefaultClient, req)
	ck := resp.Cookies()
	if len(ck) != 1 || ck[0].Name != "MIGRATEID" {
		t.Fatalf("cookies %v", resp.Header["Set-Cookie"])
	}
	for i := 0; i < 10; i++ {
		req, _ := http.NewRequest("GET", "http://127.0.0.1:"+lp+"/", nil)
		req.AddCookie(ck[0])
		got, resp := body(t, http.DefaultClient, req)
		if got != first || len(resp.Cookies()) != 0 {
			t.Fatalf("request %d: %q (first %q), cookies %v", i, got, first, resp.Cookies())
		}
	}
}

func TestIWRRWeights(t *testing.T) {
	a, b := named("a"), named("b")
	defer a.Close()
	defer b.Close()
	lp := freePort(t)
	src := fmt.Sprintf("ListenHTTP\nAddress 127.0.0.1\nPort %s\nService\nBalancer iwrr\nBackEnd\nAddress 127.0.0.1\nPort %s\nWeight 3\nEnd\nBackEnd\nAddress 127.0.0.1\nPort %s\nWeight 1\nEnd\nEnd\nEnd\n", lp, portOf(a.URL), portOf(b.URL))
	startProxy(t, src, nil)
	count := map[string]int{}
	for i := 0; i < 40; i++ {
		got, _, _ := get(http.DefaultClient, "http://127.0.0.1:"+lp+"/")
		count[got[:1]]++
	}
	if count["a"] != 30 || count["b"] != 10 {
		t.Fatalf("iwrr split %v, want a:30 b:10", count)
	}
}

func TestHeadersAndRewrite(t *testing.T) {
	a := named("a")
	defer a.Close()
	dir := t.TempDir()
	errPage := filepath.Join(dir, "503.html")
	os.WriteFile(errPage, []byte("custom 503"), 0o600)
	lp := freePort(t)
	src := fmt.Sprintf(`ListenHTTP
Address 127.0.0.1
Port %s
AddHeader "X-Added: yes"
SetHeader "X-Set: fixed"
HeadRemove "^X-Secret:"
RewriteLocation 1
ErrorFile 503 "%s"
Service
  URL "^/down"
  BackEnd
    Address 127.0.0.1
    Port 1
  End
End
Service
  BackEnd
    Address 127.0.0.1
    Port %s
  End
End
End
`, lp, errPage, portOf(a.URL))
	startProxy(t, src, nil)
	req, _ := http.NewRequest("GET", "http://127.0.0.1:"+lp+"/", nil)
	req.Header.Set("X-Set", "client")
	req.Header.Set("X-Secret", "s")
	if got, _ := body(t, http.DefaultClient, req); got != "a|yes|fixed|" {
		t.Errorf("headers at backend: %q", got)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ = http.NewRequest("GET", "http://127.0.0.1:"+lp+"/redirect", nil)
	req.Host = "www.example.com"
	// The backend redirects to itself (its own Host): pointed back at us.
	req2, _ := http.NewRequest("GET", "http://127.0.0.1:"+lp+"/redirect", nil)
	req2.Host = hostPort(a.URL)
	_, resp := body(t, noRedirect, req2)
	if loc := resp.Header.Get("Location"); loc != "http://"+hostPort(a.URL)+"/target" {
		// Host was the backend's address, so it is rewritten to that Host header: unchanged text.
		t.Errorf("Location %q", loc)
	}
	_ = req
	got, resp := body(t, http.DefaultClient, mustReq("GET", "http://127.0.0.1:"+lp+"/down"))
	if resp.StatusCode != 503 || got != "custom 503" {
		t.Errorf("503 page: %d %q", resp.StatusCode, got)
	}
}

func TestRewriteLocationToListener(t *testing.T) {
	var beAddr string
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "http://"+beAddr+"/login")
		w.WriteHeader(302)
	}))
	defer be.Close()
	beAddr = hostPort(be.URL)
	lp := freePort(t)
	startProxy(t, strings.Replace(simpleCfg(lp, portOf(be.URL)), "Service\n", "RewriteLocation 1\nService\n", 1), nil)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req := mustReq("GET", "http://127.0.0.1:"+lp+"/")
	req.Host = "www.example.com"
	_, resp := body(t, noRedirect, req)
	if loc := resp.Header.Get("Location"); loc != "http://www.example.com/login" {
		t.Fatalf("Location %q", loc)
	}
}

func mustReq(method, url string) *http.Request {
	r, err := http.NewRequest(method, url, nil)
	if err != nil {
		panic(err)
	}
	return r
}

func TestHTTPSListenerSNIAndHTTPSBackend(t *testing.T) {
	be := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls-backend proto=%s", r.Header.Get("X-Forwarded-Proto"))
	}))
	defer be.Close()
	dir := t.TempDir()
	c1 := writeCert(t, dir, "one.example")
	c2 := writeCert(t, dir, "two.example")
	lp := freePort(t)
	src := fmt.Sprintf("ListenHTTPS\nAddress 127.0.0.1\nPort %s\nCert \"%s\"\nCert \"%s\"\nService\nBackEnd\nAddress 127.0.0.1\nPort %s\nHTTPS\nEnd\nEnd\nEnd\n", lp, c1, c2, portOf(be.URL))
	startProxy(t, src, nil)
	for _, name := range []string{"one.example", "two.example"} {
		conn, err := tls.Dial("tcp", "127.0.0.1:"+lp, &tls.Config{ServerName: name, InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		if cn := conn.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != name {
			t.Errorf("SNI %s got certificate %s", name, cn)
		}
		fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", name)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		conn.Close()
		if string(b) != "tls-backend proto=https" {
			t.Errorf("body %q", b)
		}
	}
}

func TestWebSocketUpgrade(t *testing.T) {
	// A backend that answers 101 and then echoes bytes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil || req.Header.Get("Upgrade") != "websocket" {
					io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
					return
				}
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
				io.Copy(c, br)
			}()
		}
	}()
	lp := freePort(t)
	startProxy(t, simpleCfg(lp, portOf("http://"+ln.Addr().String())), nil)
	c, err := net.Dial("tcp", "127.0.0.1:"+lp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	for _, msg := range []string{"ping", "a longer frame of bytes"} {
		io.WriteString(c, msg)
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo %q: %q %v", msg, buf, err)
		}
	}
}

func TestSlowlorisClosed(t *testing.T) {
	a := named("a")
	defer a.Close()
	lp := freePort(t)
	startProxy(t, "Client 1\n"+simpleCfg(lp, portOf(a.URL)), nil)
	c, err := net.Dial("tcp", "127.0.0.1:"+lp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n")
	// Trickle a header byte at a time: the head deadline is absolute.
	go func() {
		for i := 0; i < 40; i++ {
			if _, err := io.WriteString(c, "X"); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.ReadAll(c)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("slow client held the connection %v", d)
	}
}

func TestProxyProtocolToBackend(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pln := &proxyproto.Listener{Listener: ln}
	defer pln.Close()
	got := make(chan string, 4)
	go http.Serve(pln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.RemoteAddr
		io.WriteString(w, "ok")
	}))
	lp := freePort(t)
	src := strings.Replace(simpleCfg(lp, portOf("http://"+ln.Addr().String())), "End\nEnd\nEnd\n", "ProxyProtocol 2\nEnd\nEnd\nEnd\n", 1)
	startProxy(t, src, nil)
	c, _ := net.Dial("tcp", "127.0.0.1:"+lp)
	defer c.Close()
	for i := 0; i < 2; i++ {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		if ra := <-got; ra != c.LocalAddr().String() {
			t.Fatalf("backend saw %s, want the client's %s", ra, c.LocalAddr())
		}
	}
}

func TestAccessLogFormats(t *testing.T) {
	a := named("a")
	defer a.Close()
	want := map[int]string{
		1: `127.0.0.1 GET /x?y=1 HTTP/1.1 - HTTP/1.1 200 OK`,
		2: `127.0.0.1 GET /x?y=1 HTTP/1.1 - HTTP/1.1 200 OK (h.example/service1 -> 127.0.0.1:`,
		3: `h.example 127.0.0.1 - bob [`,
		4: `127.0.0.1 - bob [`,
		5: `h.example 127.0.0.1 - bob [`,
	}
	for level := 1; level <= 5; level++ {
		var buf syncBuffer
		lp := freePort(t)
		s := startProxy(t, fmt.Sprintf("LogLevel %d\n", level)+simpleCfg(lp, portOf(a.URL)), &buf)
		req := mustReq("GET", "http://127.0.0.1:"+lp+"/x?y=1")
		req.Host = "h.example"
		req.SetBasicAuth("bob", "pw")
		req.Header.Set("Referer", "http://ref/")
		req.Header.Set("User-Agent", `agent "q"`)
		body(t, http.DefaultClient, req)
		line := waitLog(t, s, &buf, 1)
		if !strings.HasPrefix(line, want[level]) {
			t.Errorf("LogLevel %d: %q does not start with %q", level, line, want[level])
		}
		if level == 5 && !strings.Contains(line, `" 200 4 "http://ref/" "agent \"q\"" (service1 -> 127.0.0.1:`) {
			t.Errorf("LogLevel 5: %q", line)
		}
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitLog waits until the access log holds n lines: a line is written
// after the response reaches the client.
func waitLog(t *testing.T, s *Server, b *syncBuffer, n int) string {
	t.Helper()
	waitFor(t, 5*time.Second, func() bool {
		s.alog.flush()
		return strings.Count(b.String(), "\n") >= n
	})
	return b.String()
}
