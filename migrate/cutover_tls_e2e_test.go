//go:build e2e

package migrate_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/internal/testbed"
	"github.com/migrate-tool/migrate/migrate"
)

// selfSigned returns a certificate for name and its key, PEM encoded.
func selfSigned(t *testing.T, name string) (certPEM, keyPEM []byte, cert *x509.Certificate) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	cert, _ = x509.ParseCertificate(der)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), cert
}

// TestCutoverHTTPS moves nginx serving HTTP and HTTPS: both ports are
// held and no request fails. By default HTTPS passes through untouched
// (clients keep seeing the site's own certificate, now served by new);
// with --tls-cert the old host terminates TLS with the certificate given.
func TestCutoverHTTPS(t *testing.T) {
	t.Run("passthrough", func(t *testing.T) { testCutoverHTTPS(t, false) })
	t.Run("terminate", func(t *testing.T) { testCutoverHTTPS(t, true) })
}

func testCutoverHTTPS(t *testing.T, terminate bool) {
	bed := testbed.New(t, testbed.Options{PrivateDirs: []string{"/var/www"}, CopyDirs: []string{"/etc/nginx"}})
	old := bed.Old
	certPEM, keyPEM, cert := selfSigned(t, "www.example.test")
	old.WriteFile(t, "/etc/nginx/ssl/www.crt", certPEM, 0o644)
	old.WriteFile(t, "/etc/nginx/ssl/www.key", keyPEM, 0o600)
	old.WriteFile(t, "/etc/nginx/sites-enabled/tls", []byte(`server {
	listen 443 ssl;
	server_name www.example.test;
	ssl_certificate /etc/nginx/ssl/www.crt;
	ssl_certificate_key /etc/nginx/ssl/www.key;
	root /var/www/html;
}
`), 0o644)
	old.WriteFile(t, "/var/www/html/index.html", []byte("<h1>secure site</h1>\n"), 0o644)
	old.StartNginx(t, testbed.NginxOptions{System: true})

	dir := filepath.Join(t.TempDir(), "web")
	m, err := migrate.Create(dir, &migrate.Plan{Version: migrate.PlanVersion, Name: "web", Created: time.Now().UTC(),
		From: old.SSHSpec(), To: bed.New.SSHSpec(), Service: "nginx", Port: 80})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if out, errOut, code := bed.Migrate(t, "cutover", dir, "--prepare-only"); code != 0 {
		t.Fatalf("prepare: exit %d\n%s\n%s", code, out, errOut)
	}

	pool := x509.NewCertPool()
	pool.AddCert(cert)
	args := []string{"cutover", dir, "--json"}
	want, mode := cert, "tcp"
	if terminate {
		// The proxy's certificate for the move: another one for the same
		// name, which clients trust too.
		c2, k2, x2 := selfSigned(t, "www.example.test")
		file := filepath.Join(t.TempDir(), "move.pem")
		os.WriteFile(file, append(k2, c2...), 0o600)
		args = append(args, "--tls-cert", file)
		pool.AddCert(x2)
		want, mode = x2, "https"
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "www.example.test"}, MaxIdleConnsPerHost: 2}}
	var ok, failed atomic.Int64
	var lastErr atomic.Value
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 20000 && ctx.Err() == nil; i++ {
			url := "https://" + old.Addr + "/index.html"
			if i%2 == 1 {
				url = "http://" + old.Addr + "/index.html"
			}
			resp, err := client.Get(url)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !strings.Contains(string(b), "secure site") {
					err = fmt.Errorf("%s: %s %q", url, resp.Status, b)
				}
			}
			if err != nil {
				if ctx.Err() == nil {
					failed.Add(1)
					lastErr.Store(err.Error())
				}
				continue
			}
			ok.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	time.Sleep(time.Second)
	out, errOut, code := bed.Migrate(t, args...)
	time.Sleep(time.Second)
	cancel()
	<-done
	if code != 0 {
		t.Fatalf("cutover: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("https+http: %d ok, %d failed (%v)", ok.Load(), failed.Load(), lastErr.Load())
	if failed.Load() != 0 || ok.Load() < 100 {
		t.Fatalf("%d ok, %d failed: %v", ok.Load(), failed.Load(), lastErr.Load())
	}
	if !strings.Contains(out, `:443 (`+mode+`)`) || !strings.Contains(out, `:80 (http)`) {
		t.Fatalf("the summary does not show port 443 as %s and 80 proxied:\n%s", mode, out)
	}
	// Through the old address: new's nginx with the migrated certificate
	// (passthrough), or the proxy with the one given (terminate).
	conn, err := tls.Dial("tcp", old.Addr+":443", &tls.Config{RootCAs: pool, ServerName: "www.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if !conn.ConnectionState().PeerCertificates[0].Equal(want) {
		t.Fatalf("the old address presents %s, not the expected certificate", conn.ConnectionState().PeerCertificates[0].SerialNumber)
	}
}
