//go:build e2e

package tail

import (
	"bufio"
	"context"
	"fmt"
	"github.com/migrate-tool/migrate/internal/testenv"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/internal/accesslog"
)

// TestNginxLogrotate follows the access log of a real nginx (two worker
// processes) under load while the real logrotate rotates it, once with
// create + USR1 and once with copytruncate, and checks that every request
// arrives exactly once.
func TestNginxLogrotate(t *testing.T) {
	for _, bin := range []string{"nginx", "logrotate"} {
		if _, err := exec.LookPath(bin); err != nil {
			testenv.Skip(t, fmt.Sprintf("%s not installed", bin))
		}
	}
	for _, mode := range []string{"create", "copytruncate"} {
		t.Run(mode, func(t *testing.T) { nginxRotate(t, mode) })
	}
}

func nginxRotate(t *testing.T, mode string) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	logPath := filepath.Join(dir, "access.log")
	pidPath := filepath.Join(dir, "nginx.pid")
	port := freePort(t)
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	conf := fmt.Sprintf(`%s
worker_processes 2;
daemon off;
pid %s;
error_log %s/error.log;
events { worker_connections 256; }
http {
	access_log %s combined;
	client_body_temp_path %s;
	proxy_temp_path %s;
	fastcgi_temp_path %s;
	uwsgi_temp_path %s;
	scgi_temp_path %s;
	server {
		listen 127.0.0.1:%d;
		location / { return 200 "ok\n"; }
	}
}
`, user, pidPath, dir, logPath, dir, dir, dir, dir, dir, port)
	confPath := filepath.Join(dir, "nginx.conf")
	os.WriteFile(confPath, []byte(conf), 0o644)
	os.WriteFile(logPath, nil, 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ng := exec.CommandContext(ctx, "nginx", "-c", confPath, "-p", dir)
	ng.Stderr = os.Stderr
	if err := ng.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { ng.Process.Signal(os.Interrupt); ng.Wait() }()
	base := fmt.Sprintf("http://127.0.0.1:%d/", port)
	waitHTTP(t, base)

	rot := fmt.Sprintf("%s {\n\t%s\n\trotate 5\n\tmissingok\n\tnocompress\n\tpostrotate\n\t\tkill -USR1 $(cat %s)\n\tendscript\n}\n",
		logPath, mode, pidPath)
	if mode == "copytruncate" {
		rot = fmt.Sprintf("%s {\n\tcopytruncate\n\trotate 5\n\tmissingok\n\tnocompress\n}\n", logPath)
	}
	rotPath := filepath.Join(dir, "logrotate.conf")
	os.WriteFile(rotPath, []byte(rot), 0o644)

	c := follow(t, logPath, Options{FromStart: true})
	const clients, per, rotations = 2, 1500, 3
	var wg sync.WaitGroup
	var mu sync.Mutex
	sent := map[string]bool{}
	var failed int
	for g := 0; g < clients; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			hc := &http.Client{Timeout: 10 * time.Second}
			for i := 0; i < per && ctx.Err() == nil; i++ {
				id := fmt.Sprintf("c%d-%d", g, i)
				resp, err := hc.Get(base + "?id=" + id)
				mu.Lock()
				if err != nil || resp.StatusCode != 200 {
					failed++
				} else {
					sent[id] = true
				}
				mu.Unlock()
				if resp != nil {
					resp.Body.Close()
				}
			}
		}(g)
	}
	// Rotate while the load runs, each time after some requests.
	for r := 0; r < rotations; r++ {
		target := (r + 1) * clients * per / (rotations + 1)
		for {
			mu.Lock()
			n := len(sent)
			mu.Unlock()
			if n >= target || ctx.Err() != nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		out, err := exec.CommandContext(ctx, "logrotate", "-f", "-s", filepath.Join(dir, "state"), rotPath).CombinedOutput()
		if err != nil {
			t.Fatalf("logrotate: %v\n%s", err, out)
		}
	}
	wg.Wait()
	if failed > 0 {
		t.Fatalf("%d requests failed", failed)
	}
	// Every line on disk (all generations) must arrive, each once.
	onDisk := readIDs(t, dir)
	deadline := time.Now().Add(30 * time.Second)
	var got map[string]int
	for {
		got = map[string]int{}
		p, _ := accesslog.NewParser("combined", accesslog.Options{})
		var rec accesslog.Record
		for _, l := range c.snapshot() {
			if p.Parse([]byte(l), &rec) == nil {
				got[strings.TrimPrefix(rec.Path, "/?id=")]++
			}
		}
		complete := true
		for id := range onDisk {
			if got[id] == 0 {
				complete = false
				break
			}
		}
		if mode == "create" && len(got) <= len(sent) { // sent lacks "ready"
			complete = false
		}
		if complete || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for id := range onDisk {
		if got[id] == 0 {
			t.Errorf("request %s is in the log files but was not delivered", id)
		}
	}
	delete(got, "ready")
	delete(onDisk, "ready")
	for id, n := range got {
		if n > 1 {
			t.Errorf("request %s delivered %d times", id, n)
		}
		if !sent[id] {
			t.Errorf("delivered %s, which was never sent", id)
		}
	}
	st := c.tl.Stats()
	t.Logf("%s: %d requests, %d lines on disk, %d delivered, stats %+v", mode, len(sent), len(onDisk), len(got), st)
	if mode == "create" && len(got) != len(sent) {
		t.Errorf("delivered %d of %d requests", len(got), len(sent))
	}
	// A rotation just before the load ends may not be switched to (nginx
	// had not written to the new file yet), so the counts are bounded only.
	if mode == "create" && (st.Rotations < 1 || st.Rotations > rotations) ||
		mode == "copytruncate" && (st.Truncations < 1 || st.Truncations > rotations) {
		t.Errorf("stats %+v, want 1..%d rotations", st, rotations)
	}
}

func readIDs(t *testing.T, dir string) map[string]bool {
	ids := map[string]bool{}
	files, _ := filepath.Glob(filepath.Join(dir, "access.log*"))
	p, _ := accesslog.NewParser("combined", accesslog.Options{})
	var rec accesslog.Record
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			if p.Parse(sc.Bytes(), &rec) == nil {
				ids[strings.TrimPrefix(rec.Path, "/?id=")] = true
			}
		}
		fh.Close()
	}
	return ids
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitHTTP(t *testing.T, url string) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(url + "?id=ready")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx not answering: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
