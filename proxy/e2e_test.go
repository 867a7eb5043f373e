//go:build e2e

package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"github.com/migrate-tool/migrate/internal/testenv"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/internal/testbed"
)

// nginxBackend runs a real nginx on a loopback port serving "name".
type nginxBackend struct {
	t    *testing.T
	dir  string
	port string
	cmd  *exec.Cmd
}

func startNginx(t *testing.T, name string) *nginxBackend {
	t.Helper()
	testbed.RequireTools(t, "nginx")
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "index.html"), []byte(name), 0o644)
	n := &nginxBackend{t: t, dir: dir, port: freePort(t)}
	conf := fmt.Sprintf(`user root; worker_processes 1; daemon off; pid %s/nginx.pid; error_log stderr;
events { worker_connections 256; }
http { access_log off; keepalive_timeout 5s; server { listen 127.0.0.1:%s; root %s; } }
`, dir, n.port, dir)
	os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644)
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *nginxBackend) start() {
	n.t.Helper()
	n.cmd = exec.Command("nginx", "-e", "stderr", "-c", filepath.Join(n.dir, "nginx.conf"))
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	if err := testbed.WaitHTTP("http://127.0.0.1:"+n.port+"/", 5*time.Second, nil); err != nil {
		n.t.Fatal(err)
	}
}

func (n *nginxBackend) stop() {
	if n.cmd != nil && n.cmd.Process != nil {
		n.cmd.Process.Signal(syscall.SIGTERM)
		n.cmd.Wait()
		n.cmd = nil
	}
}

// poundBinary returns a "pound" symlink to the migrate binary.
func poundBinary(t *testing.T) string {
	bin := testbed.Binary(t)
	p := filepath.Join(t.TempDir(), "pound")
	if err := os.Symlink(bin, p); err != nil {
		t.Fatal(err)
	}
	return p
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	var pid int
	testbed.WaitFor(t, "pid file", 5*time.Second, func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err
	})
	return pid
}

// TestE2ESeed001FailoverDaemon runs seed 001 through the pound command
// line (Daemon 1, so it forks) against nginx: the main backend is killed
// under load and restarted.
func TestE2ESeed001FailoverDaemon(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root (User/Group)")
	}
	mainBE, emerg := startNginx(t, "main"), startNginx(t, "emergency")
	dir := t.TempDir()
	// The daemon runs as nobody and must still read the file on SIGHUP.
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o755)
	lp := freePort(t)
	src := fill(mustRead(t, "testdata/001-failover.cfg"), "LISTEN", lp, "BACKEND", mainBE.port, "EMERGENCY", emerg.port)
	// Debian has no "pound" user; Alive 1 keeps the test short.
	src = strings.NewReplacer(`User "pound"`, `User "nobody"`, `Group "pound"`, `Group "nogroup"`, "Alive 60", "Alive 1").Replace(src)
	cfg := filepath.Join(dir, "pound.cfg")
	os.WriteFile(cfg, []byte(src), 0o644)
	pidFile := filepath.Join(dir, "pound.pid")
	out, err := exec.Command(poundBinary(t), "-f", cfg, "-p", pidFile).CombinedOutput()
	if err != nil {
		t.Fatalf("pound: %v\n%s", err, out)
	}
	pid := readPID(t, pidFile)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	url := "http://127.0.0.1:" + lp + "/"
	var fails, total atomic.Int64
	var mainHits, emergHits atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 5 * time.Second}
			for i := 0; i < 20000; i++ {
				select {
				case <-stop:
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
					fails.Add(1)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode != 200:
					fails.Add(1)
				case string(b) == "main":
					mainHits.Add(1)
				case string(b) == "emergency":
					emergHits.Add(1)
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	testbed.WaitFor(t, "traffic on main", 5*time.Second, func() error { return minHits(&mainHits, 50) })
	mainBE.stop()
	testbed.WaitFor(t, "traffic on emergency", 5*time.Second, func() error { return minHits(&emergHits, 50) })
	before := mainHits.Load()
	mainBE.start()
	testbed.WaitFor(t, "traffic back on main within two Alive periods", 2500*time.Millisecond, func() error { return minHits(&mainHits, before+20) })
	close(stop)
	wg.Wait()
	if fails.Load() != 0 {
		t.Fatalf("%d of %d requests failed", fails.Load(), total.Load())
	}
	// SIGHUP reloads: the BackEnd now points at the other nginx.
	os.WriteFile(cfg, []byte(strings.Replace(src, "Port "+mainBE.port, "Port "+emerg.port, 1)), 0o644)
	syscall.Kill(pid, syscall.SIGHUP)
	testbed.WaitFor(t, "reloaded configuration in use", 5*time.Second, func() error {
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		req, _ := http.NewRequest("GET", url, nil)
		req.Host = "www.nire.com"
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "emergency" {
			return fmt.Errorf("still served by %q", b)
		}
		return nil
	})
	// SIGTERM stops the daemon.
	syscall.Kill(pid, syscall.SIGTERM)
	testbed.WaitFor(t, "daemon exit", 15*time.Second, func() error {
		if syscall.Kill(pid, 0) == nil && !isZombie(pid) {
			return fmt.Errorf("pid %d still running", pid)
		}
		return nil
	})
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] == "Z"
}

func minHits(n *atomic.Int64, want int64) error {
	if n.Load() < want {
		return fmt.Errorf("%d hits, want %d", n.Load(), want)
	}
	return nil
}

// TestE2ESeed003HTTPS runs seed 003 in the foreground (-e) over HTTP and
// HTTPS against two nginx backends, reloads it with SIGHUP and stops it.
func TestE2ESeed003HTTPS(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root (RootJail, User/Group)")
	}
	be1, be2 := startNginx(t, "be1"), startNginx(t, "be2")
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.Mkdir(filepath.Join(dir, "jail"), 0o755)
	p := writeCert(t, dir, "www.example.com")
	os.Rename(p, filepath.Join(dir, "pound.pem"))
	lp, lps := freePort(t), freePort(t)
	src := fill(mustRead(t, "testdata/003-https.cfg"), "DIR", dir, "LISTEN", lp, "LISTENS", lps, "BACKEND1", be1.port, "BACKEND2", be2.port)
	src = strings.Replace(src, `Group "nobody"`, `Group "nogroup"`, 1) // Debian's name for it
	cfg := filepath.Join(dir, "pound.cfg")
	os.WriteFile(cfg, []byte(src), 0o644)
	cmd := exec.Command(poundBinary(t), "-e", "-f", cfg)
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	testbed.WaitFor(t, "https listener", 5*time.Second, func() error {
		_, _, err := get(client, "https://127.0.0.1:"+lps+"/")
		return err
	})
	seen := map[string]int{}
	for i := 0; i < 40; i++ {
		scheme, port := "http", lp
		if i%2 == 1 {
			scheme, port = "https", lps
		}
		b, code, err := get(client, scheme+"://127.0.0.1:"+port+"/")
		if err != nil || code != 200 {
			t.Fatalf("%s: %d %v", scheme, code, err)
		}
		seen[b]++
	}
	if seen["be1"] == 0 || seen["be2"] == 0 {
		t.Fatalf("not balanced: %v", seen)
	}
	// The process dropped to nobody inside the jail.
	st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if !strings.Contains(string(st), "Uid:\t65534") {
		t.Errorf("not running as nobody:\n%s", st)
	}
	if root, _ := os.Readlink(fmt.Sprintf("/proc/%d/root", cmd.Process.Pid)); root != filepath.Join(dir, "jail") {
		t.Errorf("root is %q, want the RootJail", root)
	}
	// The access log (LogLevel default 1) names the requests.
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("did not stop on SIGTERM")
	}
	if !strings.Contains(logs.String(), "GET / HTTP/1.1 - HTTP/1.1 200") {
		t.Errorf("access log missing:\n%s", logs.String())
	}
}

// TestE2EAgentStartStop starts the proxy through the agent handlers (as
// the orchestrator does on the old host) and stops it.
func TestE2EAgentStartStop(t *testing.T) {
	be := startNginx(t, "new host")
	dir := t.TempDir()
	lp := freePort(t)
	cfgText := fmt.Sprintf("LogLevel 4\nListenHTTP\nAddress 127.0.0.1\nPort %s\nService\nBackEnd\nAddress 127.0.0.1\nPort %s\nEnd\nEnd\nEnd\n", lp, be.port)
	// In the agent, the proxy is started from the agent's own binary; here
	// that is the migrate binary built for the tests.
	res, err := start(context.Background(), StartParams{Config: cfgText, Dir: dir}, testbed.Binary(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Stop(context.Background(), StopParams{Dir: dir}) })
	if _, err := start(context.Background(), StartParams{Config: cfgText, Dir: dir}, testbed.Binary(t)); err == nil || !strings.Contains(err.Error(), "already runs") {
		t.Fatalf("second start: %v", err)
	}
	b, code, err := get(http.DefaultClient, "http://127.0.0.1:"+lp+"/")
	if err != nil || code != 200 || b != "new host" {
		t.Fatalf("through proxy: %q %d %v", b, code, err)
	}
	st, err := NewControl(res.Control).Status(context.Background())
	if err != nil || len(st.Services) != 1 {
		t.Fatalf("control: %+v %v", st, err)
	}
	sr, err := Stop(context.Background(), StopParams{Dir: dir})
	if err != nil || !sr.Stopped || sr.PID != res.PID {
		t.Fatalf("stop: %+v %v", sr, err)
	}
	logText, _ := os.ReadFile(res.AccessLog)
	if !strings.Contains(string(logText), `"GET / HTTP/1.1" 200 8`) {
		t.Fatalf("access log: %q", logText)
	}
	// A bad configuration is refused before anything starts.
	if _, err := start(context.Background(), StartParams{Config: "ListenHTTTP\n", Dir: dir}, testbed.Binary(t)); err == nil || !strings.Contains(err.Error(), "unknown directive") {
		t.Fatalf("bad config: %v", err)
	}
}
