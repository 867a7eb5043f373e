//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/migrate-tool/migrate/internal/testbed"
	"github.com/migrate-tool/migrate/migrate"
)

// drainRecords are drain's --json records, read as they come.
type drainRecords struct {
	mu        sync.Mutex
	recs      []pdDrainRecord
	following chan struct{} // closed at the first record following the log
	done      chan struct{} // closed when the output ends
}

func readDrainRecords(r io.Reader) *drainRecords {
	d := &drainRecords{following: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(d.done)
		sc := bufio.NewScanner(r)
		var once sync.Once
		for sc.Scan() {
			var r pdDrainRecord
			if json.Unmarshal(sc.Bytes(), &r) != nil {
				continue
			}
			r.at = time.Now()
			d.mu.Lock()
			d.recs = append(d.recs, r)
			d.mu.Unlock()
			if r.Following {
				once.Do(func() { close(d.following) })
			}
		}
	}()
	return d
}

// all returns the records read so far.
func (d *drainRecords) all() []pdDrainRecord {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.recs)
}

// pdInnerPID is the PID of p inside its host's PID namespace.
func pdInnerPID(t *testing.T, p *testbed.Proc) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "NSpid:" {
			n, _ := strconv.Atoi(f[len(f)-1])
			return n
		}
	}
	t.Fatal("no NSpid")
	return 0
}

// pdLogWriter appends nginx lines to a log inside a host, counting them.
type pdLogWriter struct {
	t    *testing.T
	path string // as seen from the test (Node.Path)
	n    int
}

func (w *pdLogWriter) write(path string, k int, client string) {
	w.t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		w.t.Fatal(err)
	}
	defer f.Close()
	var b strings.Builder
	for range k {
		fmt.Fprintf(&b, "%s - - [%s] \"GET /d%d HTTP/1.1\" 200 5 \"-\" \"drain-e2e\"\n", client, time.Now().Format("02/Jan/2006:15:04:05 -0700"), w.n)
		w.n++
	}
	// One write per line, as a server does.
	for _, l := range strings.SplitAfter(b.String(), "\n") {
		if l != "" {
			if _, err := f.WriteString(l); err != nil {
				w.t.Fatal(err)
			}
		}
	}
}

// pdStartUnbound runs a caching resolver forwarding example.test to b.
func pdStartUnbound(t *testing.T, b *pdBIND) string {
	t.Helper()
	testbed.RequireTools(t, "unbound")
	dir := t.TempDir()
	port := pdFreePort(t, b.primPort)
	conf := fmt.Sprintf(`server:
  interface: 127.0.0.1@%[1]d
  port: %[1]d
  access-control: 127.0.0.0/8 allow
  username: ""
  chroot: ""
  directory: "%[2]s"
  pidfile: "%[2]s/unbound.pid"
  use-syslog: no
  logfile: ""
  module-config: "iterator"
  do-not-query-localhost: no
  local-zone: "test." nodefault
  domain-insecure: "example.test"
  num-threads: 1
forward-zone:
  name: "example.test"
  forward-addr: 127.0.0.1@%[3]d
  forward-addr: 127.0.0.2@%[4]d
`, port, dir, b.primPort, b.secPort)
	cf := filepath.Join(dir, "unbound.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	testbed.StartDaemon(t, dir, "unbound", nil, "unbound", "-d", "-c", cf)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	pdWait(t, "unbound answering", 15*time.Second, func() error {
		_, err := pdLookupRD(addr, "www.example.test.")
		return err
	})
	return addr
}

// pdLookupRD asks a resolver (recursion desired) for name's A record and
// returns its remaining TTL.
func pdLookupRD(server, name string) (uint32, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	c := &dns.Client{Timeout: time.Second}
	r, _, err := c.Exchange(m, server)
	if err != nil {
		return 0, err
	}
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
		return 0, fmt.Errorf("%s: rcode %s, %d answers", server, dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	return r.Answer[0].Header().Ttl, nil
}

type pdDrainRecord struct {
	Type        string   `json:"type"`
	Following   bool     `json:"following"`
	ReqPerMin   int64    `json:"req_per_min"`
	DNSOK       bool     `json:"dns_ok"`
	DNSPending  []string `json:"dns_pending"`
	CachesOK    bool     `json:"caches_ok"`
	TrafficOK   bool     `json:"traffic_ok"`
	Drained     bool     `json:"drained"`
	Clients     int      `json:"clients"`
	Lines       int64    `json:"lines"`
	Rotations   int64    `json:"rotations"`
	Truncations int64    `json:"truncations"`
	Lost        int64    `json:"lost"`
	Then        []struct {
		Action string `json:"action"`
		OK     bool   `json:"ok"`
		Detail string `json:"detail"`
	} `json:"then"`
	at time.Time
}

// TestDrainOnTestBed: a proxy log on the old host that the test appends to
// (rotated by rename and by copytruncate in the middle), a real BIND where
// the test switches www to the new host: drain does not end while traffic
// flows, ends with exit 0 and a summary counting every line once traffic
// stopped for --quiet-for, and stops the proxy.
func TestDrainOnTestBed(t *testing.T) {
	bed := testbed.New(t, testbed.Options{})
	b := pdStartBIND(t, bed.Old.Addr, 4)
	resolver := pdStartUnbound(t, b)
	proxy := bed.Old.Start(t, "proxy", "sleep", "3001")
	pid := pdInnerPID(t, proxy)

	const logPath = "/var/log/migrate-proxy/access.log"
	bed.Old.WriteFile(t, logPath, []byte("198.51.100.1 - - [22/Nov/2026:00:00:00 +0000] \"GET /before HTTP/1.1\" 200 5 \"-\" \"x\"\n"), 0o644)
	dir := filepath.Join(t.TempDir(), "web")
	m, err := migrate.Create(dir, &migrate.Plan{Version: migrate.PlanVersion, Name: "web", From: bed.Old.SSHSpec(), To: bed.New.SSHSpec(),
		Service: "nginx", Domains: []string{"www.example.test"}, DNSServers: []string{b.Primary, b.Second}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	// The takeover step's data as the cutover journals it.
	must(m.Journal.Append(migrate.StepTakeover, migrate.StepDone, migrate.TakeoverResult{Proxy: migrate.ProxyState{Host: bed.Old.SSHSpec(), PID: pid,
		AccessLog: logPath, LogFormat: "combined", Listen: bed.Old.Addr + ":80", Backend: bed.New.Addr + ":80", TakenAt: start}}, nil))
	must(m.Journal.Append(migrate.StepDNS, migrate.StepDone, migrate.DNSSwitch{Names: []string{"www.example.test."}, NewAddr: bed.New.Addr,
		Servers: []string{b.Primary, b.Second}, SwitchedAt: start, CachesExpire: start.Add(4 * time.Second)}, nil))
	must(m.Close())

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := bed.MigrateCmd(ctx, t, "--json", "drain", dir, "--watch", "--quiet-for", "3s", "--interval", "250ms", "--then", "stop-proxy", "--resolver", resolver)
	stdout, err := cmd.StdoutPipe()
	must(err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	must(cmd.Start())
	dr := readDrainRecords(stdout)
	following, readDone := dr.following, dr.done
	select {
	case <-following:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("drain never followed the log; stderr:\n%s", stderr.String())
	}

	// Traffic for 4 s from two clients, with both rotations in the middle
	// and the DNS switched after 1.5 s.
	w := &pdLogWriter{t: t}
	p := bed.Old.Path(logPath)
	writeStart := time.Now()
	rotated, truncated, switched := false, false, false
	// Write until drain has reported the DNS new and the caches expired
	// for a second (at least 4 s, at most 20 s).
	var dnsNewAt time.Time
	dnsNew := func() bool {
		for _, r := range dr.all() {
			if r.Type == "status" && r.DNSOK && r.CachesOK {
				return true
			}
		}
		return false
	}
	for i := 0; i < 4000; i++ {
		if el := time.Since(writeStart); el > 20*time.Second {
			t.Fatal("drain never saw the DNS switched")
		} else if el > 4*time.Second && !dnsNewAt.IsZero() && time.Since(dnsNewAt) > time.Second {
			break
		}
		if dnsNewAt.IsZero() && switched && dnsNew() {
			dnsNewAt = time.Now()
		}
		client := "198.51.100.7"
		if i%3 == 0 {
			client = "203.0.113.9"
		}
		w.write(p, 3, client)
		el := time.Since(writeStart)
		switch {
		case !rotated && el > time.Second:
			// rename + create; the writer finishes the old file first
			must(os.Rename(p, p+".1"))
			w.write(p+".1", 20, client)
			w.write(p, 5, client)
			rotated = true
		case !switched && el > 1500*time.Millisecond:
			// Switch while unbound's cached copy has at least 1.5 s left,
			// so drain sees the resolver stale after the servers switched.
			if ttl, err := pdLookupRD(resolver, "www.example.test."); err != nil || ttl < 2 {
				break
			}
			b.SetWWW(t, bed.New.Addr, 4)
			switched = true
		case !truncated && el > 2500*time.Millisecond:
			// logrotate copytruncate: shift the copies, copy, truncate
			must(os.Rename(p+".1", p+".2"))
			data, err := os.ReadFile(p)
			must(err)
			must(os.WriteFile(p+".1", data, 0o644))
			must(os.Truncate(p, 0))
			w.write(p, 5, client)
			truncated = true
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopped := time.Now()
	written := w.n

	waitErr := make(chan error, 1)
	go func() { <-readDone; waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Fatalf("drain: %v\nstderr:\n%s", err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("drain did not end after the traffic stopped; stderr:\n%s", stderr.String())
	}
	recs := dr.all()
	last := recs[len(recs)-1]
	if last.Type != "summary" {
		t.Fatalf("last record %+v", last)
	}
	if d := last.at.Sub(stopped); d < 3*time.Second {
		t.Errorf("drain ended %s after the traffic stopped, before --quiet-for 3s", d)
	}
	if len(recs) < 3 || !recs[len(recs)-2].Drained {
		t.Fatalf("no drained status before the summary: %+v", recs[max(len(recs)-2, 0)])
	}
	var sawTrafficWithDNS, sawStale, sawResolverStale bool
	for _, r := range recs[:len(recs)-2] {
		if r.Drained {
			t.Errorf("a status before the end says drained: %+v", r)
		}
		if r.at.Before(stopped) && r.ReqPerMin > 0 && r.DNSOK && r.CachesOK && !r.TrafficOK {
			sawTrafficWithDNS = true
		}
		if r.Following && !r.DNSOK && len(r.DNSPending) == 3 {
			sawStale = true
		}
		if r.Following && !r.DNSOK && len(r.DNSPending) == 1 && r.DNSPending[0] == resolver {
			sawResolverStale = true
		}
	}
	if !sawTrafficWithDNS || !sawStale || !sawResolverStale || !switched {
		t.Errorf("never saw DNS stale on both servers and the resolver (%v), the resolver alone stale (%v), or DNS new with traffic still flowing (%v); switched %v",
			sawStale, sawResolverStale, sawTrafficWithDNS, switched)
	}
	if last.Lines != int64(written) || last.Lost != 0 || last.Rotations < 1 || last.Truncations < 1 || last.Clients != 2 {
		t.Errorf("summary %+v, wrote %d lines", last, written)
	}
	if len(last.Then) != 1 || !last.Then[0].OK {
		t.Errorf("then %+v", last.Then)
	}
	select {
	case <-proxy.Done():
	case <-time.After(5 * time.Second):
		t.Error("the proxy still runs after stop-proxy")
	}
	if got, _ := pdLookupA(b.Second, "www.example.test."); len(got) != 1 || got[0] != bed.New.Addr {
		t.Errorf("secondary serves %v", got)
	}
	stdoutS, _, code := bed.Migrate(t, "status", dir)
	if code != 0 || !strings.Contains(stdoutS, "drain       done") {
		t.Errorf("status after drain: %s", stdoutS)
	}
	t.Logf("drain: followed %s after start; %d lines counted of %d written, %d rotation(s), %d truncation(s); ended %s after the traffic stopped",
		writeStart.Sub(start).Round(time.Millisecond), last.Lines, written, last.Rotations, last.Truncations, last.at.Sub(stopped).Round(time.Millisecond))
}

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
	dr := readDrainRecords(stdout)
	following, readDone := dr.following, dr.done
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
	for _, r := range dr.all() {
		if r.Type == "summary" || r.Drained {
			t.Errorf("drain ended while requests still came: %+v", r)
		}
	}

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
	recs := dr.all()
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
