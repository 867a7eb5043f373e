package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSeed000Migration serves seed 000's configuration: requests for
// example.com reach the new host, with the client address preserved.
func TestSeed000Migration(t *testing.T) {
	var xff string
	be := named("new")
	defer be.Close()
	spy := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		xff = r.Header.Get("X-Forwarded-For")
		io.WriteString(w, "new host content")
	})}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go spy.Serve(ln)
	defer spy.Close()
	lp := freePort(t)
	startProxy(t, fill(mustRead(t, "testdata/000-migration.cfg"), "LISTEN", lp, "BACKEND", portOf("http://"+ln.Addr().String())), nil)
	req := mustReq("GET", "http://127.0.0.1:"+lp+"/index.html")
	req.Host = "www.example.com"
	got, resp := body(t, http.DefaultClient, req)
	if resp.StatusCode != 200 || got != "new host content" || xff != "127.0.0.1" {
		t.Fatalf("got %d %q xff %q", resp.StatusCode, got, xff)
	}
	// A host the Service does not accept gets 503, not the old content.
	req = mustReq("GET", "http://127.0.0.1:"+lp+"/")
	req.Host = "other.test"
	if _, resp := body(t, http.DefaultClient, req); resp.StatusCode != 503 {
		t.Fatalf("other host: %d", resp.StatusCode)
	}
}

// TestSeed003HTTPS serves seed 003's configuration over HTTP and HTTPS
// (generated certificate) with two backends, Basic-auth sessions and the
// control socket.
func TestSeed003HTTPS(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "jail"), 0o755)
	p := writeCert(t, dir, "www.example.com")
	os.Rename(p, filepath.Join(dir, "pound.pem"))
	b1, b2 := named("be1"), named("be2")
	defer b1.Close()
	defer b2.Close()
	lp, lps := freePort(t), freePort(t)
	src := fill(mustRead(t, "testdata/003-https.cfg"), "DIR", dir, "LISTEN", lp, "LISTENS", lps,
		"BACKEND1", portOf(b1.URL), "BACKEND2", portOf(b2.URL))
	startProxy(t, src, nil)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "www.example.com"}}}
	seen := map[string]int{}
	for i := 0; i < 40; i++ {
		scheme, port := "http", lp
		if i%2 == 1 {
			scheme, port = "https", lps
		}
		got, _, err := get(client, scheme+"://127.0.0.1:"+port+"/index.html")
		if err != nil {
			t.Fatal(err)
		}
		seen[strings.SplitN(got, "|", 2)[0]]++
	}
	if seen["be1"] == 0 || seen["be2"] == 0 {
		t.Fatalf("load not spread over both backends: %v", seen)
	}
	// Session Type BASIC: one user stays on one backend.
	var first string
	for i := 0; i < 10; i++ {
		req := mustReq("GET", "https://127.0.0.1:"+lps+"/")
		req.SetBasicAuth("oresama", "pw")
		got, _ := body(t, client, req)
		if i == 0 {
			first = got
		} else if got != first {
			t.Fatalf("basic session moved from %q to %q", first, got)
		}
	}
	// xHTTP 1 allows PUT and DELETE but not WebDAV.
	for method, want := range map[string]int{"PUT": 200, "DELETE": 200, "PROPFIND": 501} {
		_, resp := body(t, http.DefaultClient, mustReq(method, "http://127.0.0.1:"+lp+"/"))
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", method, resp.StatusCode, want)
		}
	}
	// The Control socket lists both backends and can take one out.
	ctl := NewControl(filepath.Join(dir, "ctl_socket"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := ctl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Listeners) != 2 || len(st.Services) != 1 || len(st.Services[0].Backends) != 2 || st.Services[0].Sessions != 1 {
		t.Fatalf("status %+v", st)
	}
	if n, err := ctl.SetDisabled(ctx, hostPort(b1.URL), true); err != nil || n != 1 {
		t.Fatalf("disable: %d %v", n, err)
	}
	for i := 0; i < 10; i++ {
		if got, _, _ := get(http.DefaultClient, "http://127.0.0.1:"+lp+"/"); !strings.HasPrefix(got, "be2|") {
			t.Fatalf("disabled backend still used: %q", got)
		}
	}
	if _, err := ctl.SetDisabled(ctx, "nope:1", true); err == nil || !strings.Contains(err.Error(), "no such backend") {
		t.Fatalf("unknown backend: %v", err)
	}
	ctl.SetDisabled(ctx, "service1/0", false)
	st, _ = ctl.Status(ctx)
	if st.Services[0].Backends[0].Disabled {
		t.Fatal("enable by key did not work")
	}
}

func TestReloadKeepsSocket(t *testing.T) {
	a, b := named("a"), named("b")
	defer a.Close()
	defer b.Close()
	lp := freePort(t)
	s := startProxy(t, simpleCfg(lp, portOf(a.URL)), nil)
	if got, _, _ := get(http.DefaultClient, "http://127.0.0.1:"+lp+"/"); !strings.HasPrefix(got, "a|") {
		t.Fatalf("before reload: %q", got)
	}
	cfg, err := Parse("reload.cfg", []byte(simpleCfg(lp, portOf(b.URL))))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if got, _, _ := get(c, "http://127.0.0.1:"+lp+"/"); !strings.HasPrefix(got, "b|") {
		t.Fatalf("after reload: %q", got)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	a := named("a")
	defer a.Close()
	lp, mp := freePort(t), freePort(t)
	startProxy(t, "Metrics \"127.0.0.1:"+mp+"\"\n"+simpleCfg(lp, portOf(a.URL)), nil)
	get(http.DefaultClient, "http://127.0.0.1:"+lp+"/")
	got, _, err := get(http.DefaultClient, "http://127.0.0.1:"+mp+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`migrate_proxy_requests_total{backend="127.0.0.1:` + portOf(a.URL) + `",code="2xx",service="service1"} 1`,
		"migrate_proxy_backend_up{", "migrate_proxy_request_duration_seconds_bucket", "migrate_proxy_inflight_requests 0", `migrate_proxy_bytes_total{direction="out"}`} {
		if !strings.Contains(got, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestTCPAndUDPForwarding(t *testing.T) {
	// TCP echo backend.
	tln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer tln.Close()
	go func() {
		for {
			c, err := tln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	// UDP echo backend.
	upc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	defer upc.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, addr, err := upc.ReadFrom(buf)
			if err != nil {
				return
			}
			upc.WriteTo(append([]byte("dns:"), buf[:n]...), addr)
		}
	}()
	tp, up := freePort(t), freePort(t)
	_, tbp, _ := net.SplitHostPort(tln.Addr().String())
	_, ubp, _ := net.SplitHostPort(upc.LocalAddr().String())
	src := fmt.Sprintf("ListenTCP\nAddress 127.0.0.1\nPort %s\nBackEnd\nAddress 127.0.0.1\nPort %s\nEnd\nEnd\n"+
		"ListenUDP\nAddress 127.0.0.1\nPort %s\nBackEnd\nAddress 127.0.0.1\nPort %s\nEnd\nEnd\n", tp, tbp, up, ubp)
	startProxy(t, src, nil)
	c, err := net.Dial("tcp", "127.0.0.1:"+tp)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "EHLO test\r\n")
	buf := make([]byte, 11)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "EHLO test\r\n" {
		t.Fatalf("tcp echo %q %v", buf, err)
	}
	c.Close()
	u, err := net.Dial("udp", "127.0.0.1:"+up)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.SetDeadline(time.Now().Add(5 * time.Second))
	for i := 0; i < 3; i++ {
		u.Write([]byte(fmt.Sprint("q", i)))
		n, err := u.Read(buf)
		if err != nil || string(buf[:n]) != fmt.Sprint("dns:q", i) {
			t.Fatalf("udp reply %q %v", buf[:n], err)
		}
	}
}
