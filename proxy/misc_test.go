package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	proxyproto "github.com/pires/go-proxyproto"
)

func TestTrustedProxyUnixBackendDestinationMaxRequest(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "app.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan http.Header, 4)
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		io.WriteString(w, "unix")
	}))
	defer ln.Close()
	lp := freePort(t)
	src := fmt.Sprintf(`TrustedProxy 127.0.0.0/8
ListenHTTP
Address 127.0.0.1
Port %s
xHTTP 2
MaxRequest 10
RewriteDestination 1
Service
BackEnd
Address "%s"
End
End
End
`, lp, sock)
	startProxy(t, src, nil)
	req := mustReq("MOVE", "http://127.0.0.1:"+lp+"/a")
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	req.Header.Set("Forwarded", "for=203.0.113.9")
	req.Header.Set("Destination", "http://www.example.com/b")
	got, resp := body(t, http.DefaultClient, req)
	if resp.StatusCode != 200 || got != "unix" {
		t.Fatalf("unix backend: %d %q", resp.StatusCode, got)
	}
	h := <-seen
	if h.Get("X-Forwarded-For") != "203.0.113.9, 127.0.0.1" || h.Get("Forwarded") != "for=203.0.113.9, for=127.0.0.1;proto=http" {
		t.Errorf("trusted peer: XFF %q Forwarded %q", h.Get("X-Forwarded-For"), h.Get("Forwarded"))
	}
	if h.Get("Destination") != "http://www.example.com/b" {
		// Unix-socket backends have no host:port to rewrite to.
		t.Errorf("Destination %q", h.Get("Destination"))
	}
	big, _ := http.NewRequest("POST", "http://127.0.0.1:"+lp+"/", strings.NewReader(strings.Repeat("x", 11)))
	if _, resp := body(t, http.DefaultClient, big); resp.StatusCode != 413 {
		t.Errorf("MaxRequest: %d", resp.StatusCode)
	}
	got = rawRequest(t, "127.0.0.1:"+lp, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 413 ") {
		t.Errorf("MaxRequest chunked: %q", firstLine(got))
	}
}

func TestRewriteDestinationTCP(t *testing.T) {
	var dest string
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { dest = r.Header.Get("Destination") }))
	defer be.Close()
	lp := freePort(t)
	startProxy(t, strings.Replace(simpleCfgX(lp, 2, portOf(be.URL)), "Service\n", "RewriteDestination 1\nService\n", 1), nil)
	req := mustReq("COPY", "http://127.0.0.1:"+lp+"/a")
	req.Header.Set("Destination", "http://www.example.com/b?x=1")
	body(t, http.DefaultClient, req)
	if dest != "http://"+hostPort(be.URL)+"/b?x=1" {
		t.Fatalf("Destination %q", dest)
	}
}

func TestTCPProxyProtocolAndFailover(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pln := &proxyproto.Listener{Listener: ln}
	defer pln.Close()
	go func() {
		for {
			c, err := pln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, "220 "+c.RemoteAddr().String()+"\r\n")
			}()
		}
	}()
	emerg, _ := net.Listen("tcp", "127.0.0.1:0")
	defer emerg.Close()
	go func() {
		for {
			c, err := emerg.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "220 emergency\r\n")
			c.Close()
		}
	}()
	tp := freePort(t)
	_, bp, _ := net.SplitHostPort(ln.Addr().String())
	_, ep, _ := net.SplitHostPort(emerg.Addr().String())
	startProxy(t, fmt.Sprintf("ListenTCP\nAddress 127.0.0.1\nPort %s\nBackEnd\nAddress 127.0.0.1\nPort %s\nProxyProtocol 1\nEnd\nEmergency\nAddress 127.0.0.1\nPort %s\nEnd\nEnd\n", tp, bp, ep), nil)
	greet := func() (string, string) {
		c, err := net.Dial("tcp", "127.0.0.1:"+tp)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		return string(b), c.LocalAddr().String()
	}
	if got, local := greet(); got != "220 "+local+"\r\n" {
		t.Fatalf("PROXY v1 over TCP: backend saw %q, client is %s", got, local)
	}
	pln.Close() // the main backend goes away: Emergency answers
	for i := 0; i < 3; i++ {
		if got, _ := greet(); got != "220 emergency\r\n" {
			t.Fatalf("after failure: %q", got)
		}
	}
}

func TestRedirectAndHAport(t *testing.T) {
	lp := freePort(t)
	src := fmt.Sprintf("ListenHTTP\nAddress 127.0.0.1\nPort %s\nService\nHost \"old.example\"\nRedirect 301 \"https://new.example\"\nEnd\nService\nRedirect \"https://new.example/moved.html\"\nEnd\nEnd\n", lp)
	startProxy(t, src, nil)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req := mustReq("GET", "http://127.0.0.1:"+lp+"/a/b?c=1")
	req.Host = "old.example"
	_, resp := body(t, noRedirect, req)
	if resp.StatusCode != 301 || resp.Header.Get("Location") != "https://new.example/a/b?c=1" {
		t.Errorf("redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, resp = body(t, noRedirect, mustReq("GET", "http://127.0.0.1:"+lp+"/x"))
	if resp.StatusCode != 302 || resp.Header.Get("Location") != "https://new.example/moved.html" {
		t.Errorf("redirect with path: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	cfg, err := Parse("f", []byte("ListenHTTP\nPort 1\nService\nBackEnd\nAddress 127.0.0.1\nPort 2\nHAport 3\nEnd\nRedirect 303 \"x\"\nEnd\nEnd\n"))
	d := diagsOf(t, err)
	if len(d) != 1 || d[0] != `f:9.10: Redirect: code "303" is not 301, 302 or 307` || cfg.Listeners[0].Services[0].Backends[0].HAPort != 3 {
		t.Errorf("diags %q", d)
	}
}

func TestRandomWeightsAndDisabled(t *testing.T) {
	a, b, c := named("a"), named("b"), named("c")
	defer a.Close()
	defer b.Close()
	defer c.Close()
	lp := freePort(t)
	src := fmt.Sprintf("ListenHTTP\nAddress 127.0.0.1\nPort %s\nService\nBackEnd\nAddress 127.0.0.1\nPort %s\nPriority 3\nEnd\n"+
		"BackEnd\nAddress 127.0.0.1\nPort %s\nPriority 1\nEnd\nBackEnd\nAddress 127.0.0.1\nPort %s\nDisabled 1\nEnd\nEnd\nEnd\n",
		lp, portOf(a.URL), portOf(b.URL), portOf(c.URL))
	startProxy(t, src, nil)
	count := map[string]int{}
	for i := 0; i < 400; i++ {
		got, _, err := get(http.DefaultClient, "http://127.0.0.1:"+lp+"/")
		if err != nil {
			t.Fatal(err)
		}
		count[got[:1]]++
	}
	// 3:1 weighted random: a gets 300 ± a generous margin; c never.
	if count["a"] < 240 || count["a"] > 360 || count["c"] != 0 {
		t.Fatalf("split %v", count)
	}
}
