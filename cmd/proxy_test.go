package cmd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func runArgv(ctx context.Context, argv ...string) (string, string, int) {
	var out, errOut bytes.Buffer
	code := Run(ctx, IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, argv)
	return out.String(), errOut.String(), code
}

func TestProxyCheck(t *testing.T) {
	ctx := context.Background()
	seed := "../proxy/testdata/seeds/000-migration.cfg"
	bad := filepath.Join(t.TempDir(), "bad.cfg")
	os.WriteFile(bad, []byte("ListenHTTTP\n  Address 127.0.0.1\n  Port 80\nEnd\nLogLevel 7\n"), 0o600)
	tests := []struct {
		argv             []string
		code             int
		stdout, inStderr string
	}{
		{[]string{"migrate", "proxy", "-c", "-f", seed}, 0, "Config file " + seed + " is OK\n", "12.9: warning: HeadRequire is deprecated: use Header"},
		{[]string{"pound", "-c", "-f", seed}, 0, "Config file " + seed + " is OK\n", ""},
		{[]string{"migrate", "proxy", "-c", "-f", bad}, 1, "", bad + `:1.1: unknown directive "ListenHTTTP" (did you mean ListenHTTP?)` + "\n" +
			bad + ":5.10: LogLevel: 7 is not from 0 to 5\nmigrate: error: " + bad + ": 2 problems found\nmigrate: hint: "},
		{[]string{"pound", "-c", "-f", bad}, 1, "", "2 problems found"},
		{[]string{"migrate", "proxy"}, 2, "", "migrate: error: give -f FILE or --listen ADDR:PORT --to ADDR:PORT"},
		{[]string{"migrate", "proxy", "--listen", "127.0.0.1:1"}, 2, "", "--listen needs --to ADDR:PORT"},
		{[]string{"migrate", "proxy", "--listen", "nope", "--to", "127.0.0.1:1"}, 1, "", "migrate: hint: give ADDR:PORT"},
		{[]string{"migrate", "proxy", "ctl", "list"}, 2, "", "-C SOCKET is required"},
		{[]string{"migrate", "proxy", "ctl", "-C", "/nonexistent.sock", "list"}, 1, "", "migrate: hint: is the proxy running"},
		{[]string{"pound", "-V"}, 0, "pound (migrate proxy), Pound 4 configuration compatible\n", ""},
	}
	for _, tt := range tests {
		out, errOut, code := runArgv(ctx, tt.argv...)
		if code != tt.code || (tt.stdout != "" && out != tt.stdout) || !strings.Contains(errOut, tt.inStderr) {
			t.Errorf("%v: code %d stdout %q stderr %q", tt.argv, code, out, errOut)
		}
	}
}

func TestProxyRunQuickAndCtl(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "new host, client %s", r.Header.Get("X-Forwarded-For"))
	}))
	defer be.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "p.cfg")
	ctlSock := filepath.Join(dir, "ctl")
	os.WriteFile(cfg, []byte(fmt.Sprintf("Control %q\nLogLevel 0\nListenHTTP\nAddress 127.0.0.1\nPort %s\nService\nBackEnd\nAddress 127.0.0.1\nPort %s\nEnd\nEnd\nEnd\n",
		ctlSock, addr[strings.LastIndex(addr, ":")+1:], be.URL[strings.LastIndex(be.URL, ":")+1:])), 0o600)
	for _, argv := range [][]string{
		{"migrate", "proxy", "--listen", addr, "--to", strings.TrimPrefix(be.URL, "http://"), "--access-log", "", "--control", ctlSock},
		{"migrate", "proxy", "-f", cfg, "-p", filepath.Join(dir, "pid")},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan int, 1)
		var errOut string
		go func() { _, e, code := runArgv(ctx, argv...); errOut = e; done <- code }()
		var body string
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			resp, err := http.Get("http://" + addr + "/")
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				body = string(b)
				break
			}
		}
		if body != "new host, client 127.0.0.1" {
			t.Errorf("%v: body %q", argv, body)
		}
		if argv[2] == "--listen" {
			out, e, code := runArgv(context.Background(), "migrate", "proxy", "ctl", "-C", ctlSock, "list")
			if code != 0 || !strings.Contains(out, "to/0") {
				t.Errorf("ctl list (quick mode): %d %q %q", code, out, e)
			}
		}
		if argv[2] == "-f" {
			// The pid file is written once the sockets are open, which may
			// be just after the first request was answered.
			var err error
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if _, err = os.Stat(filepath.Join(dir, "pid")); err == nil {
					break
				}
			}
			if err != nil {
				t.Errorf("pid file: %v", err)
			}
			out, e, code := runArgv(context.Background(), "migrate", "proxy", "ctl", "-C", ctlSock, "list")
			if code != 0 || !strings.Contains(out, "service1/0") || !strings.Contains(out, "alive") {
				t.Errorf("ctl list: %d %q %q", code, out, e)
			}
			out, _, code = runArgv(context.Background(), "migrate", "--json", "proxy", "ctl", "-C", ctlSock, "disable", "service1/0")
			if code != 0 || !strings.Contains(out, `"changed":1`) || !strings.Contains(out, `"type":"status"`) {
				t.Errorf("ctl disable: %d %q", code, out)
			}
			resp, err := http.Get("http://" + addr + "/")
			if err != nil || resp.StatusCode != 503 {
				t.Errorf("after disable: %v %v", resp, err)
			}
		}
		cancel()
		select {
		case code := <-done:
			if code != 0 && code != 130 {
				t.Errorf("%v: exit %d: %s", argv, code, errOut)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%v: did not stop", argv)
		}
	}
}

func TestProxyCheckJSON(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.cfg")
	os.WriteFile(bad, []byte("HeadRequire x\nListenHTTP\nPort 0\nEnd\n"), 0o600)
	out, _, code := runArgv(context.Background(), "migrate", "--json", "proxy", "-c", "-f", bad)
	if code != 1 || !strings.Contains(out, `"type":"summary"`) || !strings.Contains(out, `"ok":false`) ||
		!strings.Contains(out, `{"message":"Port: \"0\" is not a number from 1 to 65535","pos":"`+bad+`:3.6"}`) {
		t.Fatalf("code %d out %s", code, out)
	}
	out, _, code = runArgv(context.Background(), "migrate", "--json", "proxy", "-c", "-f", "../proxy/testdata/seeds/001-failover.cfg")
	if code != 0 || !strings.Contains(out, `"ok":true`) || !strings.Contains(out, `HeadRequire is deprecated`) {
		t.Fatalf("code %d out %s", code, out)
	}
}
