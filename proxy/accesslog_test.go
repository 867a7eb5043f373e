package proxy

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/migrate-tool/migrate/internal/accesslog"
)

// TestAccessLogReadByDrain checks that every LogLevel writes lines the
// access-log parser used by `migrate drain` reads, with the client,
// method, path and status intact.
func TestAccessLogReadByDrain(t *testing.T) {
	a := named("a")
	defer a.Close()
	formats := map[int]accesslog.Format{1: accesslog.Pound1, 2: accesslog.Pound2, 3: accesslog.Pound3, 4: accesslog.Pound4, 5: accesslog.Pound5}
	for level := 1; level <= 5; level++ {
		var buf syncBuffer
		lp := freePort(t)
		s := startProxy(t, fmt.Sprintf("LogLevel %d\n", level)+simpleCfg(lp, portOf(a.URL)), &buf)
		req := mustReq("GET", "http://127.0.0.1:"+lp+"/p?q=\"x\"")
		req.Host = "h.example"
		body(t, http.DefaultClient, req)
		body(t, http.DefaultClient, mustReq("PROPFIND", "http://127.0.0.1:"+lp+"/dav"))
		waitLog(t, s, &buf, 2)
		p, err := accesslog.NewParser(string(formats[level]), accesslog.Options{})
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) != 2 {
			t.Fatalf("LogLevel %d: %q", level, lines)
		}
		want := []struct {
			method, path string
			status       int
		}{{"GET", "/p?q=\"x\"", 200}, {"PROPFIND", "/dav", 501}}
		for i, line := range lines {
			var r accesslog.Record
			if err := p.Parse([]byte(line), &r); err != nil {
				t.Errorf("LogLevel %d: %q: %v", level, line, err)
				continue
			}
			if r.Client != "127.0.0.1" || r.Method != want[i].method || r.Status != want[i].status {
				t.Errorf("LogLevel %d: %q parsed as %+v", level, line, r)
			}
		}
	}
}
