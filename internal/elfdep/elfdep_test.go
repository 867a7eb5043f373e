package elfdep

import (
	"errors"
	"github.com/migrate-tool/migrate/internal/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// lddSet runs ldd (allowed in tests only: the product never runs binaries)
// and returns the real paths of the libraries it lists.
func lddSet(t *testing.T, bin string) map[string]bool {
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", bin, err)
	}
	set := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		var p string
		if _, after, ok := strings.Cut(l, "=> "); ok {
			p = strings.Fields(after)[0]
		} else if strings.HasPrefix(l, "/") {
			p = strings.Fields(l)[0]
		}
		if p == "" || p == "not" {
			continue
		}
		set[realpath(t, p)] = true
	}
	return set
}

func realpath(t *testing.T, p string) string {
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatalf("realpath %s: %v", p, err)
	}
	return r
}

func TestClosureMatchesLdd(t *testing.T) {
	if _, err := exec.LookPath("ldd"); err != nil {
		testenv.Skip(t, "no ldd")
	}
	bins := []string{"/usr/sbin/nginx", "/usr/sbin/named", "/usr/lib/postfix/sbin/master", "/usr/lib/postfix/sbin/smtpd",
		"/usr/sbin/postconf", "/usr/bin/bash", "/usr/bin/curl", "/usr/sbin/sshd", "/usr/bin/openssl", "/usr/sbin/haproxy",
		"/usr/sbin/unbound", "/usr/sbin/knotd", "/usr/bin/strace"}
	r := NewResolver()
	tested := 0
	for _, bin := range bins {
		if _, err := os.Stat(bin); err != nil {
			continue
		}
		tested++
		t.Run(filepath.Base(bin), func(t *testing.T) {
			want := lddSet(t, bin)
			c := r.Closure([]string{bin})
			if len(c.Missing) > 0 {
				t.Errorf("unresolved: %v", c.Missing)
			}
			got := map[string]bool{}
			for p := range c.Deps {
				got[realpath(t, p)] = true
			}
			if d := diff(got, want); d != "" {
				t.Errorf("closure differs from ldd:\n%s", d)
			}
		})
	}
	if tested < 3 {
		testenv.Skip(t, "too few test binaries installed")
	}
}

func diff(got, want map[string]bool) string {
	var out []string
	for p := range got {
		if !want[p] {
			out = append(out, "+ "+p)
		}
	}
	for p := range want {
		if !got[p] {
			out = append(out, "- "+p)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func TestReadNotELF(t *testing.T) {
	p := filepath.Join(t.TempDir(), "script")
	os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755)
	if _, err := Read(p); !errors.Is(err, ErrNotELF) {
		t.Fatalf("Read script = %v, want ErrNotELF", err)
	}
	os.WriteFile(p, []byte("\x7fELF garbage garbage garbage garbage garbage garbage garbage"), 0o755)
	if _, err := Read(p); !errors.Is(err, ErrNotELF) {
		t.Fatalf("Read garbage = %v, want ErrNotELF", err)
	}
}

func TestExpandOrigin(t *testing.T) {
	r := &Resolver{LIB: "lib/x86_64-linux-gnu", PLAT: "x86_64"}
	got := r.expand([]string{"$ORIGIN/../lib", "${LIB}/x", "/opt/$PLATFORM", "relative"}, &File{Path: "/opt/app/bin/app"})
	want := []string{"/opt/app/lib", "/opt/x86_64"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("expand = %v, want %v", got, want)
	}
}

func FuzzRead(f *testing.F) {
	if b, err := os.ReadFile("/usr/bin/true"); err == nil {
		f.Add(b[:4096])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "x")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		Read(p) // must not panic
	})
}
