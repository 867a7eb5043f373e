//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/migrate-tool/migrate/internal/testbed"
	"github.com/migrate-tool/migrate/migrate"
)

// TestDrainAfterCutover is the whole path on the test bed: `migrate plan`,
// `migrate cutover` of nginx with the DNS on a BIND primary+secondary, then
// `migrate drain --watch --then stop-proxy` while a client still uses the
// old address: drain does not end while those requests flow, ends once
// they stop (DNS switched, TTL run out, quiet), counts them, and stops the
// proxy so the old address refuses while the new host serves.
func TestDrainAfterCutover(t *testing.T) {
	bed := testbed.New(t, testbed.Options{PrivateDirs: []string{"/var/www"}})
	bed.Old.WriteFile(t, "/var/www/html/index.html", []byte("<h1>the site</h1>\n"), 0o644)
	bed.Old.StartNginx(t, testbed.NginxOptions{System: true})
	d := bed.StartDNS(t, testbed.DNSOptions{Records: []string{"www 3 IN A " + bed.Old.Addr}})

	dir := filepath.Join(t.TempDir(), "web")
	if out, errOut, code := bed.Migrate(t, "plan", "--from", bed.Old.SSHSpec(), "--to", bed.New.SSHSpec(), "--service", "nginx", "--port", "80",
		"--dir", dir, "--domain", "www."+d.Zone, "--dns-server", d.Servers()[0], "--dns-server", d.Servers()[1], "--tsig-key", d.KeyFile); code != 0 {
		t.Fatalf("plan: exit %d\n%s\n%s", code, out, errOut)
	}
	if out, errOut, code := bed.Migrate(t, "cutover", dir, "--prepare-only"); code != 0 {
		t.Fatalf("cutover --prepare-only: exit %d\n%s\n%s", code, out, errOut)
	}
	if out, errOut, code := bed.Migrate(t, "cutover", dir); code != 0 {
		t.Fatalf("cutover: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, s := range d.Servers() {
		if got, err := testbed.Lookup(s, "www."+d.Zone, dns.TypeA); err != nil || len(got) != 1 || got[0] != bed.New.Addr {
			t.Fatalf("after cutover %s serves www as %v (%v)", s, got, err)
		}
	}
	oldURL := "http://" + bed.Old.Addr + "/index.html"
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(url string) error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	}
	if err := get(oldURL); err != nil {
		t.Fatalf("the old address does not forward after cutover: %v", err)
	}
	// The proxy flushes its log every second: wait until that request is
	// in the file, so drain (following from the end) does not count it.
	proxyLog := filepath.Join(migrate.StateDir, "web", "access.log")
	pdWait(t, "the proxy to log the first request", 10*time.Second, func() error {
		b, err := bed.Old.ReadFile(proxyLog)
		if err == nil && !strings.Contains(string(b), "GET /index.html") {
			err = fmt.Errorf("%s: %d bytes, no request yet", proxyLog, len(b))
		}
		return err
	})

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := bed.MigrateCmd(ctx, t, "--json", "drain", dir, "--watch", "--quiet-for", "4s", "--interval", "250ms", "--then", "stop-proxy")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var recs []pdDrainRecord
	following := make(chan struct{})
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		var once sync.Once
		for sc.Scan() {
			var r pdDrainRecord
			if json.Unmarshal(sc.Bytes(), &r) != nil {
				continue
			}
			r.at = time.Now()
			mu.Lock()
			recs = append(recs, r)
			mu.Unlock()
			if r.Following {
				once.Do(func() { close(following) })
			}
		}
	}()
	select {
	case <-following:
	case <-time.After(60 * time.Second):
		t.Fatalf("drain never followed the proxy log; stderr:\n%s", stderr.String())
	}

	// A client that hard-coded the old address: 6 s of requests.
	sent := 0
	start := time.Now()
	for time.Since(start) < 6*time.Second && sent < 3000 {
		if err := get(oldURL); err != nil {
			t.Fatalf("request %d through the old address: %v", sent, err)
		}
		sent++
		time.Sleep(20 * time.Millisecond)
	}
	stopped := time.Now()
	mu.Lock()
	for _, r := range recs {
		if r.Type == "summary" || r.Drained {
			t.Errorf("drain ended while requests still came: %+v", r)
		}
	}
	mu.Unlock()

	waitErr := make(chan error, 1)
	go func() { <-readDone; waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Fatalf("drain: %v\nstderr:\n%s", err, stderr.String())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("drain did not end after the requests stopped; stderr:\n%s", stderr.String())
	}
	mu.Lock()
	defer mu.Unlock()
	last := recs[len(recs)-1]
	sawTraffic := false
	for _, r := range recs {
		sawTraffic = sawTraffic || r.ReqPerMin > 0
	}
	if last.Type != "summary" || !sawTraffic || last.at.Sub(stopped) < 4*time.Second {
		t.Fatalf("summary %+v, saw traffic %v, ended %s after the requests stopped", last, sawTraffic, last.at.Sub(stopped))
	}
	// Every request through the old address is counted (the proxy may log
	// a health check of its own on top).
	if last.Lines < int64(sent) || last.Lines > int64(sent)+3 || len(last.Then) != 1 || !last.Then[0].OK || !strings.Contains(last.Then[0].Detail, "control socket") {
		t.Errorf("summary counts %d lines for %d requests; then %+v", last.Lines, sent, last.Then)
	}
	if err := get(oldURL); err == nil {
		t.Error("the old address still answers after stop-proxy")
	}
	if err := get("http://" + bed.New.Addr + "/index.html"); err != nil {
		t.Errorf("the new host: %v", err)
	}
	t.Logf("drain after cutover: %d requests sent through the old address, %d lines counted, ended %s after they stopped; %s",
		sent, last.Lines, last.at.Sub(stopped).Round(time.Millisecond), last.Then[0].Detail)
}
