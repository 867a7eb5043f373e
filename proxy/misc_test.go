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
