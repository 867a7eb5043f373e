package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// restartable is a backend that can be stopped and started on one port.
type restartable struct {
	t    *testing.T
	addr string
	name string
	mu   sync.Mutex
	srv  *http.Server
	hits atomic.Int64
}

func newRestartable(t *testing.T, name string) *restartable {
	r := &restartable{t: t, addr: "127.0.0.1:" + freePort(t), name: name}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *restartable) start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ln net.Listener
	var err error
	for i := 0; i < 100; i++ {
		if ln, err = net.Listen("tcp", r.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatal(err)
	}
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.hits.Add(1)
		io.WriteString(w, r.name)
	})}
	go r.srv.Serve(ln)
}

func (r *restartable) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.srv != nil {
		r.srv.Close() // closes idle keep-alive connections too
		r.srv = nil
	}
}

func (r *restartable) port() string { _, p, _ := net.SplitHostPort(r.addr); return p }

func get(c *http.Client, url string) (string, int, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode, err
}

// TestFailoverUnderLoad kills the normal backend while a bounded load
// runs: every GET must still succeed (retry or Emergency); after a restart
// traffic must come back within two Alive periods.
func TestFailoverUnderLoad(t *testing.T) {
	main := newRestartable(t, "main")
	emerg := newRestartable(t, "emergency")
	lp := freePort(t)
	src := fill(mustRead(t, "testdata/001-failover.cfg"), "LISTEN", lp, "BACKEND", main.port(), "EMERGENCY", emerg.port())
	src = strings.Replace(src, "Alive 60", "Alive 1", 1)
	startProxy(t, src, nil)
	url := "http://127.0.0.1:" + lp + "/"
	var failures, total atomic.Int64
	var seen sync.Map
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	stopLoad := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 5 * time.Second}
			for i := 0; i < 5000; i++ {
				select {
				case <-stopLoad:
					return
				case <-ctx.Done():
					return
				default:
				}
				req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
				req.Host = "www.nire.com"
				resp, err := c.Do(req)
				total.Add(1)
				if err != nil {
					failures.Add(1)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures.Add(1)
				}
				seen.Store(string(b), true)
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	waitFor(t, 5*time.Second, func() bool { return main.hits.Load() > 50 })
	main.stop()
	waitFor(t, 5*time.Second, func() bool { return emerg.hits.Load() > 50 })
	restarted := time.Now()
	before := main.hits.Load()
	main.start()
	waitFor(t, 2*time.Second+500*time.Millisecond, func() bool { return main.hits.Load() > before+20 })
	t.Logf("traffic back on main %v after restart", time.Since(restarted))
	close(stopLoad)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d of %d requests failed", failures.Load(), total.Load())
	}
	if total.Load() < 100 {
		t.Fatalf("only %d requests ran", total.Load())
	}
}

func TestPostNotRetried(t *testing.T) {
	a := newRestartable(t, "a")
	b := newRestartable(t, "b")
	lp := freePort(t)
	startProxy(t, simpleCfg(lp, a.port(), b.port()), nil)
	a.stop()
	b.stop()
	resp, err := http.Post("http://127.0.0.1:"+lp+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// One connect attempt only: the second backend was not tried for a POST.
	if got := testutilFailures(t, lp); got != 1 {
		t.Fatalf("connect failures = %d, want 1", got)
	}
}

func TestRetryOnConnectFailure(t *testing.T) {
	a := newRestartable(t, "a")
	b := newRestartable(t, "b")
	lp := freePort(t)
	startProxy(t, simpleCfg(lp, a.port(), b.port()), nil)
	a.stop()
	for i := 0; i < 20; i++ {
		body, code, err := get(http.DefaultClient, "http://127.0.0.1:"+lp+"/")
		if err != nil || code != 200 || body != "b" {
			t.Fatalf("request %d: %q %d %v", i, body, code, err)
		}
	}
}

var lastServer *Server

func testutilFailures(t *testing.T, lp string) int {
	mfs, err := lastServer.Metrics().Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "migrate_proxy_backend_failures_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return int(n)
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := readFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var _ = fmt.Sprint

// TestClientDisconnectNotBlamed: a client that hangs up in the middle of a
// large response does not make the backend dead or count as its failure.
func TestClientDisconnectNotBlamed(t *testing.T) {
	big := strings.Repeat("x", 8<<20)
	be := httptestServerBody(big)
	defer be.Close()
	lp := freePort(t)
	s := startProxy(t, simpleCfg(lp, portOf(be.URL)), nil)
	for i := 0; i < 5; i++ {
		c, err := net.Dial("tcp", "127.0.0.1:"+lp)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		buf := make([]byte, 4096)
		io.ReadFull(c, buf)
		c.Close()
	}
	lastServer = s
	if n := testutilFailures(t, lp); n != 0 {
		t.Fatalf("%d backend failures counted", n)
	}
	if st := s.Status(); !st.Services[0].Backends[0].Alive {
		t.Fatal("backend marked dead")
	}
	if got, code, err := get(http.DefaultClient, "http://127.0.0.1:"+lp+"/"); err != nil || code != 200 || len(got) != len(big) {
		t.Fatalf("after disconnects: %d %d %v", len(got), code, err)
	}
}

// TestNoGoroutineLeak: client connections that come and go (idle
// keep-alive, half-sent heads, finished requests) leave no goroutines.
func TestNoGoroutineLeak(t *testing.T) {
	a := newRestartable(t, "a")
	lp := freePort(t)
	startProxy(t, "Client 1\n"+simpleCfg(lp, a.port()), nil)
	get(http.DefaultClient, "http://127.0.0.1:"+lp+"/") // warm up pools and timers
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(50 * time.Millisecond)
	base := runtime.NumGoroutine()
	for i := 0; i < 50; i++ {
		c, err := net.Dial("tcp", "127.0.0.1:"+lp)
		if err != nil {
			t.Fatal(err)
		}
		switch i % 3 {
		case 0:
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			buf := make([]byte, 512)
			c.Read(buf)
		case 1:
			io.WriteString(c, "GET / HTTP/1.1\r\nHo")
		}
		c.Close()
	}
	waitFor(t, 5*time.Second, func() bool { return runtime.NumGoroutine() <= base+2 })
}

// TestSessionLeavesEmergency: a client pinned to the Emergency backend
// while the normal one was down goes back to it once it is alive.
func TestSessionLeavesEmergency(t *testing.T) {
	main := newRestartable(t, "main")
	emerg := newRestartable(t, "emergency")
	lp := freePort(t)
	src := fmt.Sprintf("Alive 1\nListenHTTP\nAddress 127.0.0.1\nPort %s\nService\nBackEnd\nAddress 127.0.0.1\nPort %s\nEnd\n"+
		"Emergency\nAddress 127.0.0.1\nPort %s\nEnd\nSession\nType IP\nTTL 300\nEnd\nEnd\nEnd\n", lp, main.port(), emerg.port())
	startProxy(t, src, nil)
	url := "http://127.0.0.1:" + lp + "/"
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if got, _, _ := get(c, url); got != "main" {
		t.Fatalf("first: %q", got)
	}
	main.stop()
	if got, _, _ := get(c, url); got != "emergency" {
		t.Fatalf("during outage: %q", got)
	}
	main.start()
	waitFor(t, 3*time.Second, func() bool { got, _, _ := get(c, url); return got == "main" })
}
