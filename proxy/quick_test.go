package proxy

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestQuickConfig(t *testing.T) {
	dir := t.TempDir()
	cert := writeCert(t, dir, "old.example")
	tests := []struct {
		o       QuickOptions
		kind    string
		wantErr string
	}{
		{QuickOptions{Listen: "127.0.0.1:80", To: "10.0.0.2:80", Emergency: "10.0.0.3:80", Host: "example"}, KindHTTP, ""},
		{QuickOptions{Listen: "127.0.0.1:443", To: "10.0.0.2:443", TLSCert: cert}, KindHTTPS, ""},
		{QuickOptions{Listen: "127.0.0.1:25", To: "10.0.0.2:25", Mode: "tcp", ProxyProtocol: 2}, KindTCP, ""},
		{QuickOptions{Listen: "127.0.0.1:53", To: "10.0.0.2:53", Mode: "udp"}, KindUDP, ""},
		{QuickOptions{Listen: "127.0.0.1:53", To: "10.0.0.2:53", Mode: "sctp"}, "", `--mode "sctp": want http, tcp or udp`},
		{QuickOptions{Listen: "80", To: "10.0.0.2:80"}, "", `--listen "80": address 80: missing port in address`},
		{QuickOptions{Listen: "127.0.0.1:80", To: "10.0.0.2:80", TLSCert: dir}, "", "--tls-cert:"},
		{QuickOptions{Listen: "127.0.0.1:80", To: "10.0.0.2:80", Host: "("}, "", "--host: error parsing regexp"},
		{QuickOptions{Listen: "127.0.0.1:25", To: "10.0.0.2:25", Mode: "tcp", Host: "x"}, "", "--tls-cert and --host need --mode http"},
	}
	for _, tt := range tests {
		cfg, err := QuickConfig(tt.o)
		if tt.wantErr != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("%+v: err %v, want %q", tt.o, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%+v: %v", tt.o, err)
			continue
		}
		if cfg.Listeners[0].Kind != tt.kind {
			t.Errorf("%+v: kind %s", tt.o, cfg.Listeners[0].Kind)
		}
	}
}

func TestQuickHTTPSServes(t *testing.T) {
	a := named("a")
	defer a.Close()
	cert := writeCert(t, t.TempDir(), "old.example")
	lp := freePort(t)
	cfg, err := QuickConfig(QuickOptions{Listen: "127.0.0.1:" + lp, To: hostPort(a.URL), TLSCert: cert, Host: `^old\.example$`})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(t.Context())
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	req := mustReq("GET", "https://127.0.0.1:"+lp+"/")
	req.Host = "old.example"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "a|||" {
		t.Fatalf("%q", b)
	}
	req = mustReq("GET", "https://127.0.0.1:"+lp+"/")
	req.Host = "other.example"
	resp, err = c.Do(req)
	if err != nil || resp.StatusCode != 503 {
		t.Fatalf("other host: %v %v", resp, err)
	}
}
