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

func (w *webBed) plan(t *testing.T, name string) string {
	dir := filepath.Join(t.TempDir(), name)
	m, err := migrate.Create(dir, &migrate.Plan{Version: migrate.PlanVersion, Name: name, Created: time.Now().UTC(),
		From: w.Old.SSHSpec(), To: w.New.SSHSpec(), Service: "nginx", Port: 80})
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

func TestCutoverZeroFailedRequests(t *testing.T) {
	w := newWebBed(t)
	dir := w.plan(t, "web")
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
