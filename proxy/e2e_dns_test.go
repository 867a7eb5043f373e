//go:build e2e

package proxy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/internal/testbed"
)

// TestE2EDNSOverUDPAndTCP forwards DNS to a real BIND on loopback with
// ListenUDP and ListenTCP, and queries it with dig both ways.
func TestE2EDNSOverUDPAndTCP(t *testing.T) {
	testbed.RequireTools(t, "named", "dig")
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	bp := freePort(t)
	zone := `$TTL 300
@ IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 300
@ IN NS ns.example.test.
ns IN A 192.0.2.53
www IN A 198.51.100.7
`
	os.WriteFile(filepath.Join(dir, "db.example.test"), []byte(zone), 0o644)
	conf := fmt.Sprintf(`options { directory %q; pid-file "named.pid"; listen-on port %s { 127.0.0.1; }; listen-on-v6 { none; };
  recursion no; session-keyfile "session.key"; };
zone "example.test" { type primary; file "db.example.test"; };
`, dir, bp)
	os.WriteFile(filepath.Join(dir, "named.conf"), []byte(conf), 0o644)
	named := exec.Command("named", "-g", "-u", "root", "-c", filepath.Join(dir, "named.conf"))
	var nlog strings.Builder
	named.Stderr = &nlog
	if err := named.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { named.Process.Signal(syscall.SIGTERM); named.Wait() })
	// named opens its sockets before it has loaded the zone: wait for an
	// answer, not a port.
	testbed.WaitFor(t, "named to serve the zone", 15*time.Second, func() error {
		out, err := exec.Command("dig", "@127.0.0.1", "-p", bp, "+short", "+tries=1", "+time=1", "www.example.test", "A").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "198.51.100.7" {
			return fmt.Errorf("dig: %q %v; named: %s", out, err, nlog.String())
		}
		return nil
	})
	lp := freePort(t)
	startProxy(t, fmt.Sprintf("ListenUDP\nAddress 127.0.0.1\nPort %s\nBackEnd\nAddress 127.0.0.1\nPort %s\nEnd\nEnd\n"+
		"ListenTCP\nAddress 127.0.0.1\nPort %s\nBackEnd\nAddress 127.0.0.1\nPort %s\nEnd\nEnd\n", lp, bp, lp, bp), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, mode := range []string{"+notcp", "+tcp"} {
		out, err := exec.CommandContext(ctx, "dig", "@127.0.0.1", "-p", lp, mode, "+short", "+tries=1", "+time=3", "www.example.test", "A").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "198.51.100.7" {
			t.Errorf("dig %s: %q %v", mode, out, err)
		}
	}
}
