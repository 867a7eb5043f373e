package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// scriptedBackend answers each connection's first request with resp.
func scriptedBackend(t *testing.T, resp string, gotBody chan<- string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
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
				if err != nil {
					return
				}
				if req.Header.Get("Expect") == "100-continue" {
					io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
				}
				b, _ := io.ReadAll(req.Body)
				if gotBody != nil {
					gotBody <- string(b)
				}
				io.WriteString(c, resp)
			}()
		}
	}()
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	return p
}

func TestResponseFraming(t *testing.T) {
	tests := []struct {
		name, backend, req string
		want               []string
		notWant            []string
	}{
		{"until close", "HTTP/1.1 200 OK\r\n\r\nstreamed until close", "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
			[]string{"Connection: close\r\n", "\r\n\r\nstreamed until close"}, nil},
		{"dechunk for 1.0", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", "GET / HTTP/1.0\r\n\r\n",
			[]string{"Connection: close\r\n", "\r\n\r\nabcde"}, []string{"Transfer-Encoding"}},
		{"chunked wins over length", "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
			[]string{"Transfer-Encoding: chunked\r\n", "3\r\nabc\r\n0\r\n\r\n"}, []string{"Content-Length"}},
		{"head keeps length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
			[]string{"Content-Length: 5\r\n"}, nil},
		{"hop-by-hop from backend", "HTTP/1.1 204 No Content\r\nConnection: X-Internal\r\nX-Internal: 1\r\nKeep-Alive: timeout=5\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
			[]string{"204 No Content"}, []string{"X-Internal", "Keep-Alive"}},
	}
	for _, tt := range tests {
		lp := freePort(t)
		startProxy(t, simpleCfg(lp, scriptedBackend(t, tt.backend, nil)), nil)
		got := rawRequest(t, "127.0.0.1:"+lp, tt.req)
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", tt.name, got, w)
			}
		}
		for _, w := range tt.notWant {
			if strings.Contains(got, w) {
				t.Errorf("%s: %q has %q", tt.name, got, w)
			}
		}
	}
}

func TestExpectContinue(t *testing.T) {
	gotBody := make(chan string, 1)
	lp := freePort(t)
	startProxy(t, simpleCfg(lp, scriptedBackend(t, "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", gotBody)), nil)
	c, err := net.Dial("tcp", "127.0.0.1:"+lp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "PUT /f HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	if interim := rawRead(c, "\r\n\r\n"); interim != "HTTP/1.1 100 Continue\r\n\r\n" {
		t.Fatalf("interim: %q", interim)
	}
	io.WriteString(c, "hello")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("final: %v %v", resp, err)
	}
	if b := <-gotBody; b != "hello" {
		t.Fatalf("backend body %q", b)
	}
}

func rawRead(c net.Conn, until string) string {
	var b []byte
	one := make([]byte, 1)
	for !strings.HasSuffix(string(b), until) {
		if _, err := c.Read(one); err != nil {
			break
		}
		b = append(b, one[0])
	}
	return string(b)
}

func TestPipelinedRequests(t *testing.T) {
	a := named("a")
	defer a.Close()
	lp := freePort(t)
	startProxy(t, simpleCfg(lp, portOf(a.URL)), nil)
	c, err := net.Dial("tcp", "127.0.0.1:"+lp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, strings.Repeat("GET /1 HTTP/1.1\r\nHost: a\r\n\r\n", 3)+"GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(c)
	for i := 0; i < 4; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "a|||" {
			t.Fatalf("response %d: %q", i, b)
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection not closed after Connection: close: %v", err)
	}
}
