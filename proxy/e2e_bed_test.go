//go:build e2e

package proxy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/internal/testbed"
)

// TestE2EBedClientAddressPreserved is seed 000 on the test bed: the old
// host forwards to nginx on the new host, and the new host's access log
// sees the real client address — through X-Forwarded-For on one port and
// through the PROXY protocol (nginx real_ip) on another.
func TestE2EBedClientAddressPreserved(t *testing.T) {
	bed := testbed.New(t, testbed.Options{NoSSH: true})
	bin := testbed.Binary(t)
	oldA, newA, clientA := bed.Old.Addr, bed.New.Addr, bed.Client.Addr
	conf := fmt.Sprintf(`worker_processes 1;
pid /run/nginx.pid;
error_log stderr notice;
events { worker_connections 256; }
http {
	log_format seen '$remote_addr xff=$http_x_forwarded_for "$request" $status';
	access_log /var/log/nginx/access.log seen;
	server { listen 80; root /srv/www; }
	server { listen 81 proxy_protocol; root /srv/www; set_real_ip_from %s; real_ip_header proxy_protocol; }
}
`, oldA)
	bed.New.WriteFile(t, "/srv/www/index.html", []byte("new host content\n"), 0o644)
	bed.New.StartNginx(t, testbed.NginxOptions{Config: conf})
	p1 := bed.Old.Start(t, "proxy-xff", bin, "proxy", "--listen", oldA+":80", "--to", newA+":80")
	p2 := bed.Old.Start(t, "proxy-pp", bin, "proxy", "--listen", oldA+":81", "--to", newA+":81", "--proxy-protocol")
	// Port 82: the BackEnd is an address nobody holds; ConnTO 1 bounds the
	// wait before the Emergency (new) serves.
	cfg := filepath.Join(bed.Dir, "connto.cfg")
	os.WriteFile(cfg, []byte(fmt.Sprintf("ConnTO 1\nListenHTTP\nAddress %s\nPort 82\nService\nBackEnd\nAddress %s\nPort 80\nEnd\n"+
		"Emergency\nAddress %s\nPort 80\nEnd\nEnd\nEnd\n", oldA, bed.UnusedAddr(), newA)), 0o644)
	p3 := bed.Old.Start(t, "proxy-connto", bin, "proxy", "-f", cfg)
	if err := testbed.WaitTCP(oldA+":82", 10*time.Second, p3); err != nil {
		t.Fatal(err)
	}
	if err := testbed.WaitTCP(oldA+":80", 10*time.Second, p1); err != nil {
		t.Fatal(err)
	}
	if err := testbed.WaitTCP(oldA+":81", 10*time.Second, p2); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, port := range []string{"80", "81"} {
		out, err := bed.Client.Exec(ctx, "curl", "-sS", "--max-time", "5", "-H", "X-Forwarded-For: 6.6.6.6", "http://"+oldA+":"+port+"/")
		if err != nil || string(out) != "new host content\n" {
			t.Fatalf("port %s: %q %v", port, out, err)
		}
	}
	t0 := time.Now()
	out, err := bed.Client.Exec(ctx, "curl", "-sS", "--max-time", "10", "http://"+oldA+":82/")
	if err != nil || string(out) != "new host content\n" {
		t.Fatalf("port 82: %q %v", out, err)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("ConnTO 1 took %v to fail over", d)
	}
	var lines []string // without StartNginx's readiness probes from the runner
	testbed.WaitFor(t, "access log lines", 5*time.Second, func() error {
		b, err := bed.New.ReadFile("/var/log/nginx/access.log")
		if err != nil {
			return err
		}
		lines = lines[:0]
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if !strings.HasPrefix(l, bed.RootAddr+" ") {
				lines = append(lines, l)
			}
		}
		if len(lines) < 3 {
			return fmt.Errorf("log: %q", b)
		}
		return nil
	})
	// Port 80: the connection comes from old, XFF names the client (the
	// client's own forged XFF is dropped).
	if want := oldA + " xff=" + clientA + " "; !strings.HasPrefix(lines[0], want) {
		t.Errorf("xff line %q, want prefix %q", lines[0], want)
	}
	// Port 81: the PROXY header makes nginx see the client itself.
	if want := clientA + " "; !strings.HasPrefix(lines[1], want) {
		t.Errorf("proxy protocol line %q, want prefix %q", lines[1], want)
	}
}
