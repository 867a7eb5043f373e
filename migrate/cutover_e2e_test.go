//go:build e2e

package migrate_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/migrate-tool/migrate/internal/loadgen"
	"github.com/migrate-tool/migrate/internal/testbed"
	"github.com/migrate-tool/migrate/migrate"
)

// webBed is a test bed with Debian's nginx serving /var/www/html on old,
// a private /var/www in every host, and some content.
type webBed struct {
	*testbed.Bed
	nginx *testbed.Proc
	files map[string][]byte // docroot-relative path → content
}

func newWebBed(t *testing.T) *webBed {
	bed := testbed.New(t, testbed.Options{PrivateDirs: []string{"/var/www"}})
	w := &webBed{Bed: bed, files: map[string][]byte{}}
	for i := 0; i < 20; i++ {
		name := fmt.Sprintf("page%02d.html", i)
		w.put(t, name, []byte(strings.Repeat(fmt.Sprintf("<p>page %d on %s</p>\n", i, bed.Old.Hostname), 50+i*20)))
	}
	w.put(t, "index.html", []byte("<h1>the old site</h1>\n"))
	w.nginx = bed.Old.StartNginx(t, testbed.NginxOptions{System: true})
	return w
}

func (w *webBed) put(t *testing.T, name string, data []byte) {
	w.Old.WriteFile(t, filepath.Join("/var/www/html", name), data, 0o644)
	w.files[name] = data
}

// plan writes the migration directory by hand (migrate plan has its own
// tests): nginx from old to new, and www's A record on d when d is set.
func (w *webBed) plan(t *testing.T, name string, d *testbed.DNS) string {
	dir := filepath.Join(t.TempDir(), name)
	p := &migrate.Plan{Version: migrate.PlanVersion, Name: name, Created: time.Now().UTC(),
		From: w.Old.SSHSpec(), To: w.New.SSHSpec(), Service: "nginx", Port: 80}
	if d != nil {
		p.Domains, p.DNSServers, p.TSIGKeyFile = []string{"www." + d.Zone}, d.Servers(), d.KeyFile
	}
	m, err := migrate.Create(dir, p)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	return dir
}

func get(url string) ([]byte, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

func (w *webBed) startDNS(t *testing.T) *testbed.DNS {
	return w.StartDNS(t, testbed.DNSOptions{Records: []string{"www 5 IN A " + w.Old.Addr, "mail 300 IN A " + w.Old.Addr}})
}

// serves reports whether every server answers www with addr.
func serves(d *testbed.DNS, addr string) error {
	for _, s := range d.Servers() {
		got, err := testbed.Lookup(s, "www."+d.Zone, dns.TypeA)
		if err != nil {
			return err
		}
		if len(got) != 1 || got[0] != addr {
			return fmt.Errorf("%s serves www as %v, want %s", s, got, addr)
		}
	}
	return nil
}

func TestCutoverZeroFailedRequests(t *testing.T) {
	w := newWebBed(t)
	d := w.startDNS(t)
	dir := w.plan(t, "web", d)
	// Everything up to the switch happens first, while old serves.
	ctx := context.Background()
	if out, errOut, code := w.Migrate(t, "cutover", dir, "--prepare-only"); code != 0 {
		t.Fatalf("prepare: exit %d\n%s\n%s", code, out, errOut)
	}

	var urls []string
	for name := range w.files {
		urls = append(urls, "http://"+w.Old.Addr+"/"+name)
	}
	load := loadgen.Start(ctx, loadgen.Options{URLs: urls, Rate: 400, MaxDuration: 90 * time.Second, MaxRequests: 40000})

	// The site keeps being written to on old until its service stops.
	written := map[string][]byte{}
	var wmu sync.Mutex
	stopWriting := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for i := 0; ; i++ {
			select {
			case <-stopWriting:
				return
			case <-w.nginx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
			name := fmt.Sprintf("w/upload%04d.txt", i)
			data := []byte(fmt.Sprintf("written while serving, #%d at %s\n", i, time.Now().Format(time.RFC3339Nano)))
			p := w.Old.Path("/var/www/html/" + name)
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Errorf("write %s on old: %v", name, err)
				return
			}
			wmu.Lock()
			written[name] = data
			wmu.Unlock()
		}
	}()
	waitLoad(t, load, 3*time.Second)

	out, errOut, code := w.Migrate(t, "-v", "cutover", dir, "--json")
	t.Logf("stderr:\n%s", errOut)
	close(stopWriting)
	<-writerDone
	if code != 0 {
		t.Fatalf("cutover exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	t.Logf("cutover:\n%s", out)
	// Keep the load on a while after the switch: it now goes through the proxy.
	okBefore, _ := load.Snapshot()
	waitLoad(t, load, 3*time.Second)
	res := load.Stop()
	t.Logf("load: %d ok, %d failed in %v (p50 %v, p99 %v, max %v); %d after the switch",
		res.OK, res.Failed, res.Duration.Round(time.Millisecond), res.P50, res.P99, res.Max, res.OK-okBefore)
	if j, err := os.ReadFile(filepath.Join(dir, migrate.JournalFile)); err == nil {
		t.Logf("journal:\n%s", j)
	}
	if res.Failed != 0 {
		t.Fatalf("%d requests failed during the cutover: %v", res.Failed, res.Errors)
	}
	if res.OK < 1000 {
		t.Fatalf("only %d requests in the load", res.OK)
	}
	var sum migrate.CutoverResult
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.Contains(line, `"type":"summary"`) {
			if err := json.Unmarshal([]byte(line), &sum); err != nil {
				t.Fatal(err)
			}
		}
	}
	if sum.Proxy.PID == 0 {
		t.Fatalf("no summary with the proxy in the output:\n%s", out)
	}
	t.Logf("hold time %v, final sync %d files / %d bytes", sum.HoldTime, sum.FinalSync.Stats.FilesSent, sum.FinalSync.Stats.BytesSent)

	// Old nginx is gone; the proxy answers on the old address with new's content.
	if running(w.nginx) {
		t.Fatal("the old nginx still runs")
	}
	wmu.Lock()
	defer wmu.Unlock()
	if len(written) < 5 {
		t.Fatalf("only %d files were written during the run", len(written))
	}
	all := map[string][]byte{}
	for k, v := range w.files {
		all[k] = v
	}
	for k, v := range written {
		all[k] = v
	}
	for name, want := range all {
		for _, base := range []string{"http://" + w.New.Addr, "http://" + w.Old.Addr} {
			got, err := get(base + "/" + name)
			if err != nil {
				t.Fatalf("%s after cutover: %v", name, err)
			}
			if sha256.Sum256(got) != sha256.Sum256(want) {
				t.Fatalf("%s/%s differs after cutover (%d bytes, want %d)", base, name, len(got), len(want))
			}
		}
	}
	// DNS points at the new host on the primary and the secondary.
	if err := serves(d, w.New.Addr); err != nil {
		t.Fatal(err)
	}
	if sum.DNS == nil || len(sum.DNS.Changes) != 1 || sum.DNS.Changes[0].MaxOldTTL != 5 {
		t.Fatalf("dns switch in the summary: %+v", sum.DNS)
	}
	// Requests through the old address are logged by the proxy.
	log, err := w.Old.ReadFile(sum.Proxy.AccessLog)
	if err != nil || !strings.Contains(string(log), "GET /") {
		t.Fatalf("proxy access log %s: %v\n%s", sum.Proxy.AccessLog, err, log)
	}
}

func running(p *testbed.Proc) bool {
	select {
	case <-p.Done():
		return false
	default:
		return true
	}
}

// waitLoad lets the load run for d more, failing early if it fails.
func waitLoad(t *testing.T, l *loadgen.Load, d time.Duration) {
	t.Helper()
	ok0, _ := l.Snapshot()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	ok, failed := l.Snapshot()
	if ok == ok0 {
		t.Fatalf("the load made no progress in %v (%d failed)", d, failed)
	}
}

// oldServes checks that the old host answers index.html itself: a new
// nginx on old, not the proxy.
func oldNginxListens(t *testing.T, w *webBed) bool {
	out, err := w.Old.Exec(context.Background(), "sh", "-c", "ss -Hltnp 'sport = :80'")
	if err != nil {
		t.Fatalf("ss on old: %v: %s", err, out)
	}
	return strings.Contains(string(out), "nginx")
}

func TestCutoverRollbackDrills(t *testing.T) {
	for _, drill := range []string{migrate.StepRestart, migrate.StepDNS} {
		t.Run(drill, func(t *testing.T) {
			w := newWebBed(t)
			d := w.startDNS(t)
			dir := w.plan(t, "web", d)
			if out, errOut, code := w.Migrate(t, "cutover", dir, "--prepare-only"); code != 0 {
				t.Fatalf("prepare: exit %d\n%s\n%s", code, out, errOut)
			}
			load := loadgen.Start(context.Background(), loadgen.Options{URLs: []string{"http://" + w.Old.Addr + "/index.html", "http://" + w.Old.Addr + "/page03.html"}, Rate: 300, MaxDuration: 60 * time.Second})
			waitLoad(t, load, time.Second)
			out, errOut, code := w.Migrate(t, "cutover", dir, "--drill", drill, "--json")
			waitLoad(t, load, 2*time.Second)
			res := load.Stop()
			t.Logf("load: %d ok, %d failed, max %v", res.OK, res.Failed, res.Max)
			if code == 0 {
				t.Fatalf("a drill at %s exited 0:\n%s", drill, out)
			}
			if !strings.Contains(errOut, "rolled back") || !strings.Contains(errOut, "--drill "+drill) {
				t.Fatalf("stderr does not say what failed and that it was rolled back:\n%s", errOut)
			}
			if res.Failed != 0 {
				t.Fatalf("%d requests failed during the rollback: %v", res.Failed, res.Errors)
			}
			if !oldNginxListens(t, w) {
				t.Fatal("after the rollback, nginx does not listen on old's port 80")
			}
			if err := serves(d, w.Old.Addr); err != nil {
				t.Fatalf("dns not restored: %v", err)
			}
			// The migration can go on: a second cutover succeeds.
			if out, errOut, code := w.Migrate(t, "cutover", dir); code != 0 {
				t.Fatalf("cutover after rollback: exit %d\n%s\n%s", code, out, errOut)
			}
			if err := serves(d, w.New.Addr); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCutoverWrongDNSKeyTouchesNothing(t *testing.T) {
	w := newWebBed(t)
	d := w.startDNS(t)
	dir := w.plan(t, "web", d)
	bad := filepath.Join(t.TempDir(), "bad.key")
	os.WriteFile(bad, []byte(`key "migrate-key" { algorithm hmac-sha256; secret "d3JvbmcgYnV0IHdlbGwgZm9ybWVkIHNlY3JldCEhIQ=="; };`+"\n"), 0o600)
	out, errOut, code := w.Migrate(t, "cutover", dir, "--tsig-key", bad)
	if code == 0 {
		t.Fatalf("cutover with a wrong key exited 0:\n%s", out)
	}
	if !strings.Contains(errOut, "preflight") || !strings.Contains(errOut, "BADSIG") {
		t.Fatalf("error does not name the preflight and the DNS rcode:\n%s", errOut)
	}
	if strings.Contains(errOut, "d3JvbmcgYnV0") {
		t.Fatal("the secret was printed")
	}
	if !running(w.nginx) {
		t.Fatal("the old nginx was stopped")
	}
	if err := serves(d, w.Old.Addr); err != nil {
		t.Fatal(err)
	}
	j, _ := os.ReadFile(filepath.Join(dir, migrate.JournalFile))
	if strings.Contains(string(j), `"step":"takeover"`) {
		t.Fatalf("the journal shows a takeover:\n%s", j)
	}
}

func TestCutoverInterruptedContinues(t *testing.T) {
	w := newWebBed(t)
	dir := w.plan(t, "web", nil)
	if out, errOut, code := w.Migrate(t, "cutover", dir, "--prepare-only"); code != 0 {
		t.Fatalf("prepare: exit %d\n%s\n%s", code, out, errOut)
	}
	load := loadgen.Start(context.Background(), loadgen.Options{URLs: []string{"http://" + w.Old.Addr + "/index.html"}, Rate: 300, MaxDuration: 60 * time.Second})
	waitLoad(t, load, time.Second)

	// Ctrl-C as soon as the old address is held.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := w.MigrateCmd(ctx, t, "cutover", dir, "--json")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb strings.Builder
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(stdout)
	for {
		var ev migrate.Event
		if err := dec.Decode(&ev); err != nil {
			t.Fatalf("cutover ended before the takeover: %v\n%s", err, errb.String())
		}
		if ev.Step == migrate.StepTakeover && ev.State == "done" {
			break
		}
	}
	cmd.Process.Signal(os.Interrupt)
	io.Copy(io.Discard, stdout)
	err = cmd.Wait()
	if cmd.ProcessState.ExitCode() != 130 {
		t.Fatalf("interrupted cutover: %v (exit %d), want exit 130\n%s", err, cmd.ProcessState.ExitCode(), errb.String())
	}
	// Running it again continues from the journal.
	out, errOut, code := w.Migrate(t, "cutover", dir)
	if code != 0 {
		t.Fatalf("second cutover: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "takeover     skipped") {
		t.Fatalf("the second run took the address over again:\n%s", errOut)
	}
	waitLoad(t, load, time.Second)
	res := load.Stop()
	t.Logf("load: %d ok, %d failed, max %v", res.OK, res.Failed, res.Max)
	if res.Failed != 0 {
		t.Fatalf("%d requests failed: %v", res.Failed, res.Errors)
	}
	if got, err := get("http://" + w.Old.Addr + "/index.html"); err != nil || string(got) != string(w.files["index.html"]) {
		t.Fatalf("old address after cutover: %q %v", got, err)
	}
}

// TestCutoverStepByStep runs the steps one command at a time, as an admin
// would over days: capture DIR, transfer DIR, status, then cutover, which
// takes up where they left off.
func TestCutoverStepByStep(t *testing.T) {
	w := newWebBed(t)
	dir := w.plan(t, "web", nil)
	if out, errOut, code := w.Migrate(t, "capture", dir); code != 0 || !strings.Contains(out, "captured nginx") {
		t.Fatalf("capture DIR: exit %d\n%s\n%s", code, out, errOut)
	}
	if out, errOut, code := w.Migrate(t, "transfer", dir); code != 0 || !strings.Contains(out, "shipped to") {
		t.Fatalf("transfer DIR: exit %d\n%s\n%s", code, out, errOut)
	}
	// A second transfer finds the step done and sends nothing.
	if _, errOut, code := w.Migrate(t, "transfer", dir); code != 0 || !strings.Contains(errOut, "transfer     skipped") {
		t.Fatalf("second transfer DIR: exit %d\n%s", code, errOut)
	}
	out, errOut, code := w.Migrate(t, "--json", "status", dir)
	if code != 0 {
		t.Fatalf("status: exit %d\n%s", code, errOut)
	}
	for _, step := range []string{"capture", "transfer"} {
		if !strings.Contains(out, `"step":"`+step+`"`) {
			t.Fatalf("status does not list %s as a step:\n%s", step, out)
		}
	}
	out, errOut, code = w.Migrate(t, "cutover", dir)
	if code != 0 {
		t.Fatalf("cutover: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "capture      skipped") || !strings.Contains(errOut, "transfer     skipped") {
		t.Fatalf("cutover did the capture or transfer again:\n%s", errOut)
	}
	if got, err := get("http://" + w.New.Addr + "/index.html"); err != nil || string(got) != string(w.files["index.html"]) {
		t.Fatalf("new host after cutover: %q %v", got, err)
	}
	if _, errOut, code := w.Migrate(t, "capture", t.TempDir()); code != 2 || !strings.Contains(errOut, "not a migration directory") {
		t.Fatalf("capture of a directory without a plan: exit %d\n%s", code, errOut)
	}
}
