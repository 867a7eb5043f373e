//go:build e2e

package capture_test

import (
	"strings"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/capture"
	"github.com/migrate-tool/migrate/internal/testbed"
)

// apacheSite serves /srv/www from a server root of its own (/srv/apache2,
// a copy of Debian's /etc/apache2), as a second instance would.
const apacheSite = `<VirtualHost *:80>
	DocumentRoot /srv/www
	<Directory /srv/www>
		Require all granted
	</Directory>
</VirtualHost>
`

// Apache, started the Debian way (apache2ctl, with APACHE_CONFDIR naming a
// server root of its own), is captured under load, and the archive alone
// runs it again in a chroot on new.
func TestCaptureApacheE2E(t *testing.T) {
	bed := testbed.New(t, testbed.Options{})
	testbed.RequireTools(t, "apache2", "apache2ctl", "strace", "ldd")
	old := bed.Old
	old.MustExec(t, "cp", "-a", "/etc/apache2", "/srv/apache2")
	old.MustExec(t, "rm", "-f", "/srv/apache2/sites-enabled/000-default.conf")
	old.WriteFile(t, "/srv/apache2/sites-enabled/000-default.conf", []byte(apacheSite), 0o644)
	old.WriteFile(t, "/srv/www/index.html", []byte("apache v1\n"), 0o644)
	p := old.Start(t, "apache2", "env", "APACHE_CONFDIR=/srv/apache2", "apache2ctl", "-DFOREGROUND")
	url := "http://" + old.Addr + "/"
	if err := testbed.WaitHTTP(url, 15*time.Second, p); err != nil {
		t.Fatal(err)
	}
	ld := startHTTPLoad(url, "apache v1\n")
	out := t.TempDir() + "/apache2.tar.zst"
	m, es := captureLoaded(t, bed, out, ld, "--service", "apache2")
	if e := requireEntry(t, es, "/srv/www/index.html", capture.TypeFile); !hasReason(e, "data:docroot") {
		t.Errorf("docroot file reasons %v", e.Reasons)
	}
	requireEntry(t, es, "/srv/apache2/apache2.conf", capture.TypeFile)
	requireEntry(t, es, "/srv/apache2/envvars", capture.TypeFile)
	requireEntry(t, es, "/srv/apache2/sites-enabled/000-default.conf", capture.TypeFile)
	requireEntry(t, es, "/usr/sbin/apache2", capture.TypeFile)
	requireEntry(t, es, "/usr/sbin/apache2ctl", capture.TypeFile)
	// The modules Apache dlopens (from its LoadModule lines), not in any
	// ELF's DT_NEEDED.
	requireEntry(t, es, "/usr/lib/apache2/modules/mod_mpm_event.so", capture.TypeFile)
	requireEntry(t, es, "/usr/lib/apache2/modules/mod_dir.so", capture.TypeFile)
	if !hasUser(m, "www-data") || !hasGroup(m, "www-data") {
		t.Errorf("www-data missing: users %v groups %v", m.Users, m.Groups)
	}
	want := "/usr/bin/env APACHE_CONFDIR=/srv/apache2 /usr/sbin/apache2ctl -DFOREGROUND"
	if strings.Join(m.Start, " ") != want {
		t.Errorf("start %q, want %q", m.Start, want)
	}
	if len(m.Ports) == 0 || m.Ports[0].Port != 80 {
		t.Errorf("ports %v", m.Ports)
	}

	// The archive alone rebuilds a working Apache in a chroot on new.
	rebuiltServes(t, bed, out, m, "apache2", "apache v1\n", 15*time.Second)
}
