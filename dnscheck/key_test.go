package dnscheck

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/migrate-tool/migrate/internal/hint"
)

const testSecret = "dGVzdC1vbmx5LWtleS1mb3ItbWlncmF0aW9uLXRlc3Q="

func TestParseKey(t *testing.T) {
	tests := []struct {
		name, text      string
		wantName, wantA string
		wantErr         string
	}{
		{name: "bind", text: `key "migrate-key" { algorithm hmac-sha256; secret "` + testSecret + `"; };`, wantName: "migrate-key.", wantA: dns.HmacSHA256},
		{name: "tsig-keygen output with comments", text: "# made by tsig-keygen\n// again\n/* and */ key \"Up.Key\" {\n\talgorithm hmac-sha512;\n\tsecret \"" + testSecret + "\";\n};\n", wantName: "up.key.", wantA: dns.HmacSHA512},
		{name: "unquoted name", text: `key k1 { secret "` + testSecret + `"; algorithm HMAC-SHA1; };`, wantName: "k1.", wantA: dns.HmacSHA1},
		{name: "name:alg:secret", text: "migrate-key:hmac-sha384:" + testSecret + "\n", wantName: "migrate-key.", wantA: dns.HmacSHA384},
		{name: "alg:name:secret (nsupdate -y)", text: "hmac-sha224:migrate-key:" + testSecret, wantName: "migrate-key.", wantA: dns.HmacSHA224},
		{name: "empty", text: " \n", wantErr: "empty key"},
		{name: "missing semicolon", text: `key "k" { algorithm hmac-sha256 secret "` + testSecret + `"; };`, wantErr: `not closed with ';'`},
		{name: "missing secret", text: `key "k" { algorithm hmac-sha256; };`, wantErr: "needs both algorithm and secret"},
		{name: "unknown statement", text: `key "k" { algorithm hmac-sha256; secrett "` + testSecret + `"; };`, wantErr: `unknown statement "secrett"`},
		{name: "unterminated", text: `key "k" { algorithm hmac-sha256; secret "` + testSecret + `; };`, wantErr: "unterminated"},
		{name: "no brace", text: `key "k" { algorithm hmac-sha256; secret "` + testSecret + `";`, wantErr: "missing '}'"},
		{name: "bad base64", text: "k:hmac-sha256:not*base64" + testSecret, wantErr: "not valid base64"},
		{name: "unknown algorithm", text: "k:hmac-md4:" + testSecret, wantErr: "unknown tsig algorithm"},
		{name: "two fields", text: "k:" + testSecret, wantErr: "expected name:algorithm:secret"},
		{name: "garbage", text: "{" + testSecret + "}", wantErr: "not a key file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseKey(tc.text)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), testSecret) || strings.Contains(err.Error(), "not*base64") {
					t.Fatalf("error shows the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.Name != tc.wantName || k.Algorithm != tc.wantA || k.tsig()[k.Name] != testSecret {
				t.Fatalf("got %s %s", k.Name, k.Algorithm)
			}
		})
	}
}

// TestKeyNeverPrinted: formatting, logging and errors never show the secret.
func TestKeyNeverPrinted(t *testing.T) {
	k, err := ParseKey("migrate-key:hmac-sha256:" + testSecret)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		fmt.Fprintf(&buf, f+"\n", k)
		fmt.Fprintf(&buf, f+"\n", *k)
	}
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	log.Debug("x", "key", k)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "key", k)
	u := &Updater{Key: k}
	fmt.Fprintf(&buf, "%+v\n", u)
	if strings.Contains(buf.String(), testSecret) || !strings.Contains(buf.String(), "migrate-key") {
		t.Fatalf("output:\n%s", buf.String())
	}

	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.key")
	os.WriteFile(bad, []byte(`key "migrate-key" { algorithm hmac-sha256 secret "`+testSecret+`"; };`), 0o600)
	_, err = LoadKey(bad)
	if err == nil || strings.Contains(err.Error(), testSecret) || !strings.Contains(err.Error(), bad) || hint.Of(err) == "" {
		t.Fatalf("LoadKey: %v", err)
	}
	t.Setenv(KeyEnv, "migrate-key:hmac-sha256:"+testSecret)
	if k2, err := KeyFromEnv(); err != nil || k2.Name != "migrate-key." {
		t.Fatalf("env key: %v", err)
	}
	t.Setenv(KeyEnv, "migrate-key:hmac-sha256:@@"+testSecret)
	if _, err := KeyFromEnv(); err == nil || strings.Contains(err.Error(), testSecret) {
		t.Fatalf("bad env key: %v", err)
	}
}

func FuzzParseKey(f *testing.F) {
	f.Add(`key "migrate-key" { algorithm hmac-sha256; secret "` + testSecret + `"; };`)
	f.Add("k:hmac-sha256:" + testSecret)
	f.Add("/* x */ key k { secret \"a\"; };")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKey(s)
		if err == nil && (k.Name == "" || k.Algorithm == "" || k.secret == nil || *k.secret == "") {
			t.Fatalf("accepted an incomplete key from %q", s)
		}
		if err != nil && k != nil {
			t.Fatal("key and error")
		}
	})
}
