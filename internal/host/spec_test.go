package host

import (
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		in      string
		want    Spec
		wantErr string
	}{
		{in: "local", want: Spec{Local: true}},
		{in: "web1", want: Spec{Host: "web1"}},
		{in: "root@web1", want: Spec{User: "root", Host: "web1"}},
		{in: "root@10.231.0.1:2222", want: Spec{User: "root", Host: "10.231.0.1", Port: 2222}},
		{in: "web1:22", want: Spec{Host: "web1", Port: 22}},
		{in: "ssh://root@10.231.0.1", want: Spec{User: "root", Host: "10.231.0.1"}},
		{in: "ssh://root@10.231.0.1:22", want: Spec{User: "root", Host: "10.231.0.1", Port: 22}},
		{in: "ssh://10.231.0.1/", want: Spec{Host: "10.231.0.1"}},
		{in: "ssh://deploy@[fd00::1]:2222", want: Spec{User: "deploy", Host: "fd00::1", Port: 2222}},
		{in: "root@[fd00::1]:2222", want: Spec{User: "root", Host: "fd00::1", Port: 2222}},
		{in: "[::1]", want: Spec{Host: "::1"}},
		{in: "fd00::1", want: Spec{Host: "fd00::1"}},
		{in: "admin@fd00::1", want: Spec{User: "admin", Host: "fd00::1"}},
		{in: "", wantErr: "empty host spec"},
		{in: "root@", wantErr: `host spec "root@": missing host name`},
		{in: "@web1", wantErr: `host spec "@web1": empty user name`},
		{in: "web1:", wantErr: `host spec "web1:": empty port`},
		{in: "web1:0", wantErr: `host spec "web1:0": bad port "0" (want 1-65535)`},
		{in: "web1:99999", wantErr: `host spec "web1:99999": bad port "99999" (want 1-65535)`},
		{in: "web1:ssh", wantErr: `host spec "web1:ssh": bad port "ssh" (want 1-65535)`},
		{in: "http://web1", wantErr: `host spec "http://web1": unsupported scheme "http" (only ssh://)`},
		{in: "ssh://web1/etc", wantErr: `host spec "ssh://web1/etc": unexpected path or query after the host`},
		{in: "ssh://u:pw@web1", wantErr: `host spec "ssh://u:pw@web1": passwords in host specs are not supported`},
		{in: "[web1]:22", wantErr: `host spec "[web1]:22": "web1" in brackets is not an IP address`},
		{in: "[::1", wantErr: `host spec "[::1": missing ']' in "[::1"`},
		{in: "fd00::zz", wantErr: `host spec "fd00::zz": "fd00::zz" is not an IPv6 address (use [addr]:port)`},
		{in: "web 1", wantErr: `host spec "web 1": contains white space`},
		{in: "we#b", wantErr: `host spec "we#b": bad host name "we#b"`},
		{in: "a@b@c", wantErr: `host spec "a@b@c": bad user name "a@b"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSpec(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("ParseSpec(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.want.Raw = tt.in
			if got != tt.want {
				t.Fatalf("ParseSpec(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestShellQuote(t *testing.T) {
	got := ShellQuote([]string{"/usr/bin/printf", "%s\n", "it's", "a b", "", "-x=1", "$HOME"})
	want := `/usr/bin/printf '%s` + "\n" + `' 'it'\''s' 'a b' '' -x=1 '$HOME'`
	if got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
}

func TestSSHConfig(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	cfgFile := filepath.Join(dir, "config")
	cfg := `
Host web1
  HostName 10.231.0.1
  User deploy
  Port 2222
  IdentityFile ~/.ssh/web1_%r_%h
  IdentityFile /keys/second
  UserKnownHostsFile ~/kh1 ~/kh2
  IdentitiesOnly yes

Host behind
  StrictHostKeyChecking accept-new
  HostName 10.9.0.5
  ProxyJump admin@bastion:2200,web1
  HostKeyAlias behind.example

Host *.example
  User ops

Host *
  User fallback
  IdentityFile ~/.ssh/default_key
`
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadSSHConfig(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		spec string
		want target
	}{
		{"web1", target{Alias: "web1", HostName: "10.231.0.1", Port: 2222, User: "deploy",
			IdentityFiles:  []string{dir + "/.ssh/web1_deploy_10.231.0.1", "/keys/second", dir + "/.ssh/default_key"},
			IdentitiesOnly: true, KnownHosts: []string{dir + "/kh1", dir + "/kh2"}}},
		// the spec's user and port win over ssh_config
		{"root@web1:22", target{Alias: "web1", HostName: "10.231.0.1", Port: 22, User: "root",
			IdentityFiles:  []string{dir + "/.ssh/web1_root_10.231.0.1", "/keys/second", dir + "/.ssh/default_key"},
			IdentitiesOnly: true, KnownHosts: []string{dir + "/kh1", dir + "/kh2"}}},
		{"behind", target{Alias: "behind", HostName: "10.9.0.5", Port: 22, User: "fallback",
			IdentityFiles: []string{dir + "/.ssh/default_key"}, ProxyJump: []string{"admin@bastion:2200", "web1"},
			HostKeyAlias: "behind.example", AcceptNew: true}},
		{"db.example", target{Alias: "db.example", HostName: "db.example", Port: 22, User: "ops",
			IdentityFiles: []string{dir + "/.ssh/default_key"}}},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			s, err := ParseSpec(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.resolve(s)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("resolve(%s)\n got %+v\nwant %+v", tt.spec, got, tt.want)
			}
		})
	}
}

func TestSSHConfigErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := loadSSHConfig(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing explicit config: %v", err)
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("Host x\n  Port notaport\n"), 0o600)
	c, err := loadSSHConfig(bad)
	if err == nil {
		_, err = c.resolve(Spec{Raw: "x", Host: "x"})
	}
	if err == nil || !strings.Contains(err.Error(), "Port") {
		t.Fatalf("bad port: %v", err)
	}
	c, err = loadSSHConfig("none")
	if err != nil || len(c.files) != 0 {
		t.Fatalf("none: %v %d", err, len(c.files))
	}
	// default files missing is fine
	t.Setenv("HOME", dir)
	if _, err := loadSSHConfig(""); err != nil {
		t.Fatal(err)
	}
}

// FuzzParseSpec: any input either fails or yields a spec whose parts are
// sane and whose canonical form parses back to the same spec.
func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"local", "root@web1:22", "ssh://u@[fd00::1]:2222", "fd00::1", "[::1", "a@b@c", "ssh://%zz", "h:65536"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSpec(in)
		if err != nil || s.Local {
			return
		}
		if s.Host == "" || s.Port < 0 || s.Port > 65535 || strings.ContainsAny(s.Host, "/@ \t\n") {
			t.Fatalf("ParseSpec(%q) = %+v", in, s)
		}
		canon := "ssh://"
		if s.User != "" {
			canon += url.User(s.User).String() + "@"
		}
		host := s.Host
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		canon += host
		if s.Port != 0 {
			canon += ":" + strconv.Itoa(s.Port)
		}
		s2, err := ParseSpec(canon)
		if err != nil || s2.User != s.User || s2.Host != s.Host || s2.Port != s.Port {
			t.Fatalf("ParseSpec(%q) = %+v; canonical %q gives %+v, %v", in, s, canon, s2, err)
		}
	})
}
