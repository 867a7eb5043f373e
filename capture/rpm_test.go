package capture

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseRPM(t *testing.T) {
	d := t.TempDir()
	conf := filepath.Join(d, "nginx.conf")
	os.WriteFile(conf, []byte("changed by the admin\n"), 0o644)
	out := strings.Join([]string{
		"nginx\t1.20.1-14.el9\t0\t8\tabc\t/usr/sbin/nginx",
		"nginx\t1.20.1-14.el9\t1\t8\t" + strings.Repeat("0", 64) + "\t" + conf,
		"nginx\t1.20.1-14.el9\t0\t8\t\t/usr/share/nginx",
		"openssl-libs\t3.0.7-1.el9\t0\t8\tdef\t/usr/lib64/libssl.so.3",
		"garbage line",
	}, "\n")
	db := parseRPM(strings.NewReader(out))
	if !db.installed("nginx") || db.version("openssl-libs") != "3.0.7-1.el9" || db.installed("httpd") {
		t.Fatalf("packages %v", db.versions)
	}
	if o := db.owners("/usr/lib64/libssl.so.3"); len(o) != 1 || o[0] != "openssl-libs" {
		t.Fatalf("owners %v", o)
	}
	files, confs := db.files("nginx")
	if len(files) != 3 || len(confs) != 1 || !confs[conf] {
		t.Fatalf("files %v conffiles %v", files, confs)
	}
}
