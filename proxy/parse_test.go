package proxy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func diagsOf(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not a *ConfigError", err)
	}
	var out []string
	for _, d := range ce.Diags {
		out = append(out, d.String())
	}
	return out
}

func TestSeedsAsWritten(t *testing.T) {
	for _, name := range []string{"000-migration.cfg", "001-failover.cfg"} {
		cfg, err := ParseFile(filepath.Join("testdata/seeds", name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(cfg.Listeners) != 1 || cfg.Listeners[0].Port != 80 {
			t.Errorf("%s: listeners %+v", name, cfg.Listeners)
		}
		if !cfg.Daemon || cfg.Alive.Seconds() != 60 {
			t.Errorf("%s: Daemon %v Alive %v", name, cfg.Daemon, cfg.Alive)
		}
		if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0].Msg, "HeadRequire is deprecated: use Header") {
			t.Errorf("%s: warnings %v", name, cfg.Warnings)
		}
	}
	// Seed 003 as written names a certificate under /usr/share/ssl that
	// this machine does not have: that must be the only problem.
	_, err := ParseFile("testdata/seeds/003-https.cfg")
	d := diagsOf(t, err)
	if len(d) != 1 || !strings.HasPrefix(d[0], "testdata/seeds/003-https.cfg:19.6: Cert: /usr/share/ssl/certs/pound.pem") {
		t.Fatalf("003 diags = %q", d)
	}
}

func TestSeed003Loopback(t *testing.T) {
	dir := t.TempDir()
	pemPath := writeCert(t, dir, "www.example.com")
	os.Rename(pemPath, filepath.Join(dir, "pound.pem"))
	src, _ := os.ReadFile("testdata/003-https.cfg")
	s := fill(string(src), "DIR", dir, "LISTEN", "8080", "LISTENS", "8443", "BACKEND1", "9001", "BACKEND2", "9002")
	cfg, err := Parse("003.cfg", []byte(s))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Listeners) != 2 || cfg.Listeners[1].Kind != KindHTTPS || len(cfg.Listeners[1].Certs) != 1 {
		t.Fatalf("listeners %+v", cfg.Listeners)
	}
	svc := cfg.Services[0]
	if len(svc.Backends) != 2 || svc.Session == nil || svc.Session.Type != "BASIC" || svc.Session.TTL.Seconds() != 300 {
		t.Fatalf("service %+v", svc)
	}
	if cfg.Listeners[0].XHTTP != 1 || cfg.Control != dir+"/ctl_socket" {
		t.Fatalf("xHTTP %d control %q", cfg.Listeners[0].XHTTP, cfg.Control)
	}
}

func TestParseErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"), 0o600)
	tests := []struct {
		name, src string
		want      []string
	}{
		{"misspelt block", "User \"x\"\nListenHTTTP\n  Address 127.0.0.1\n  Port 80\nEnd\n",
			[]string{`f:2.1: unknown directive "ListenHTTTP" (did you mean ListenHTTP?)`}},
		{"bad pem", "ListenHTTPS\n Port 443\n Cert \"" + bad + "\"\n Service\n  BackEnd\n   Address 127.0.0.1\n   Port 1\n  End\n End\nEnd\n",
			[]string{`f:3.7: Cert ` + bad + `: not a valid PEM key and certificate`}},
		{"every problem", "LogLevel 9\nAlive x\nListenHTTP\n Port 99999\n Service\n  BackEnd\n   Port 1\n  End\n End\nEnd\n",
			[]string{`f:1.10: LogLevel: 9 is not from 0 to 5`, `f:2.7: Alive: "x" is not a number`, `f:4.7: Port: "99999"`, `f:6.3: BackEnd has no Address`}},
		{"unclosed", "ListenHTTP\n Port 80\n", []string{`f:1.1: ListenHTTP is not closed by End`}},
		{"bad regex", "ListenHTTP\nPort 1\nService\nURL \"(\"\nBackEnd\nAddress 127.0.0.1\nPort 2\nEnd\nEnd\nEnd\n", []string{`f:4.5: bad regular expression "("`}},
		{"no service", "ListenHTTP\nPort 1\nEnd\n", []string{`f:1.1: ListenHTTP has no Service`}},
		{"same address twice", "ListenHTTP\nPort 8\nService\nBackEnd\nAddress a\nPort 2\nEnd\nEnd\nEnd\nListenHTTPS\nPort 8\nEnd\n",
			[]string{`f:10.1: ListenHTTPS has no Cert`, `f:10.1: ListenHTTPS: address :8 is already used by the listener at f:1.1`}},
		{"unterminated", "User \"x\nListenHTTP\nPort 1\nEnd\n", []string{`f:1.6: unterminated quoted string`}},
		{"session id", "ListenHTTP\nPort 1\nService\nBackEnd\nAddress a\nPort 2\nEnd\nSession\nType Cookie\nTTL 5\nEnd\nEnd\nEnd\n", []string{`f:8.1: Session Type COOKIE needs an ID`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f", []byte(tt.src))
			got := diagsOf(t, err)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d diags %q, want %q", len(got), got, tt.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("diag %d = %q, want prefix %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestParseDirectives(t *testing.T) {
	dir := t.TempDir()
	inc := filepath.Join(dir, "inc.cfg")
	os.WriteFile(inc, []byte("BackEnd\n Address /run/app.sock\nEnd\n"), 0o600)
	errf := filepath.Join(dir, "503.html")
	os.WriteFile(errf, []byte("sorry"), 0o600)
	src := `# comment
user "www" # trailing comment
LOGLEVEL combined
TimeOut 7
ConnTO 3
Client 4
Control "/run/p.sock"
TrustedProxy 10.0.0.0/8 127.0.0.1
listenhttp
  address 127.0.0.1
  port 8080
  xHTTP 2
  MaxRequest 1024
  RewriteLocation 1
  AddHeader "X-Via: migrate"
  SetHeader "X-Proto: http"
  HeadRemove "^X-Secret"
  Err503 "` + errf + `"
  ErrorFile 404 "` + errf + `"
  Service "api"
    Host -beg "api."
    URL "^/v1/"
    Not Header "^X-Block:"
    HeadDeny "^User-Agent: bad"
    Match OR
      Path -exact "/a"
      Path -exact "/b"
    End
    Balancer iwrr
    BackEnd
      Address 127.0.0.1
      Port 9000
      Priority 5
      HTTPS
    End
    Include "` + inc + `"
    Emergency
      Address 127.0.0.1
      Port 9001
      Weight 20
      ProxyProtocol 2
      Disabled 1
    End
    Session
      Type COOKIE
      ID "sid"
      TTL 60
    End
  End
End
ListenTCP
  Address 127.0.0.1
  Port 2525
  BackEnd
    Address 127.0.0.1
    Port 25
  End
End
`
	cfg, err := Parse("f", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.User != "www" || cfg.LogLevel != 4 || cfg.TimeOut.Seconds() != 7 || cfg.ConnTO.Seconds() != 3 || cfg.Client.Seconds() != 4 || len(cfg.Trusted) != 2 {
		t.Errorf("globals %+v", cfg)
	}
	l := cfg.Listeners[0]
	if l.XHTTP != 2 || l.MaxRequest != 1024 || l.RewriteLocation != 1 || len(l.AddHeaders) != 1 || len(l.SetHeaders) != 1 || len(l.HeadRemove) != 1 || string(l.ErrorFiles[503]) != "sorry" || string(l.ErrorFiles[404]) != "sorry" {
		t.Errorf("listener %+v", l)
	}
	s := l.Services[0]
	if s.Name != "api" || len(s.Cond) != 5 || s.Balancer != "iwrr" || len(s.Backends) != 2 || len(s.Emergency) != 1 {
		t.Fatalf("service %+v", s)
	}
	if b := s.Backends[0]; b.Weight != 5 || !b.HTTPS {
		t.Errorf("backend %+v", b)
	}
	if b := s.Backends[1]; !b.Unix() {
		t.Errorf("included backend %+v", b)
	}
	if e := s.Emergency[0]; e.Weight != 20 || e.ProxyProtocol != 2 || !e.Disabled {
		t.Errorf("emergency %+v", e)
	}
	if s.Session.Type != "COOKIE" || s.Session.ID != "sid" {
		t.Errorf("session %+v", s.Session)
	}
	if cfg.Listeners[1].Kind != KindTCP || len(cfg.Listeners[1].Services[0].Backends) != 1 {
		t.Errorf("tcp listener %+v", cfg.Listeners[1])
	}
	var warns []string
	for _, w := range cfg.Warnings {
		warns = append(warns, w.Msg)
	}
	if got := strings.Join(warns, "|"); got != "Priority is deprecated: use Weight 5" {
		t.Errorf("warnings %q", got)
	}
}

func FuzzParse(f *testing.F) {
	for _, p := range []string{"testdata/seeds/000-migration.cfg", "testdata/seeds/001-failover.cfg", "testdata/seeds/003-https.cfg"} {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Add([]byte("ListenHTTP\nPort 1\nService\nMatch OR\nNot Host -re \"a\"\nEnd\nBackEnd\nAddress x\nPort 2\nEnd\nEnd\nEnd\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, err := Parse("fuzz", src)
		if cfg == nil {
			t.Fatal("nil config")
		}
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || len(ce.Diags) == 0 {
				t.Fatalf("error %v without diagnostics", err)
			}
		}
	})
}
