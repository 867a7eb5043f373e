//go:build e2e

package dnscheck

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/internal/hint"
)

// TestE2EBINDBadInput: each bad input is a one-line error naming the
// server and the DNS rcode, with a hint, and leaves the zone untouched.
func TestE2EBINDBadInput(t *testing.T) {
	b := startBIND(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mustKey := func(text string) *Key {
		k, err := ParseKey(text)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	silent, err := net.ListenPacket("udp", "127.0.0.1:0") // never answers
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	cases := []struct {
		name   string
		key    *Key
		server string
		zone   string
		hook   func(t *testing.T) // a concurrent edit between read and update
		want   []string           // all must appear in the error
	}{
		{name: "wrong secret", key: mustKey("migrate-key:hmac-sha256:d3JvbmctdGVzdC1rZXktZm9yLW1pZ3JhdGlvbi10ZXN0"), want: []string{"BADSIG"}},
		{name: "unknown key", key: mustKey("nobody-key:hmac-sha256:d3JvbmctdGVzdC1rZXktZm9yLW1pZ3JhdGlvbi10ZXN0"), want: []string{"BADKEY"}},
		{name: "key not allowed to update", key: mustKey("other-key:hmac-sha256:b3RoZXIta2V5LXRoYXQtbWF5LW5vdC11cGRhdGU="), want: []string{"REFUSED"}},
		{name: "unsigned", key: nil, want: []string{"REFUSED"}},
		{name: "secondary", server: b.secondary, want: []string{"REFUSED", b.secondary}},
		{name: "no such zone", zone: "nope.test", want: []string{"REFUSED", "nope.test"}},
		{name: "unreachable", server: silent.LocalAddr().String(), want: []string{"timed out", silent.LocalAddr().String()}},
		{name: "concurrent edit", hook: func(t *testing.T) {
			other := &Updater{Zone: "example.test", Primary: b.primary, Key: b.key, ConfirmTimeout: -1}
			if _, err := other.Set(ctx, "www", "A", []string{"192.0.2.99"}, 0); err != nil {
				t.Fatalf("concurrent edit: %v", err)
			}
		}, want: []string{"NXRRSET", "update example.test"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := b.key
			if !strings.Contains(tc.name, "concurrent") && tc.server == "" && tc.zone == "" {
				key = tc.key
			}
			u := &Updater{Zone: "example.test", Primary: b.primary, Key: key, Timeout: time.Second,
				ConfirmTimeout: 5 * time.Second, RecordPath: filepath.Join(t.TempDir(), "change.json")}
			if tc.server != "" {
				u.Primary = tc.server
			}
			if tc.zone != "" {
				u.Zone = tc.zone
			}
			before := zoneState(t, b)
			if tc.hook != nil {
				u.beforeSend = func() { tc.hook(t); before = zoneState(t, b) }
			}
			_, err := u.Set(ctx, "www", "A", []string{newAddr}, 3)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			t.Logf("error: %s\nhint: %s", msg, hint.Of(err))
			for _, w := range append(tc.want, u.Primary) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if strings.Contains(msg, "\n") || hint.Of(err) == "" {
				t.Errorf("want a one-line error with a hint, got %q / %q", msg, hint.Of(err))
			}
			if strings.Contains(msg, e2eKeySecret) || strings.Contains(hint.Of(err), e2eKeySecret) {
				t.Error("the secret leaked into the error")
			}
			if after := zoneState(t, b); after != before {
				t.Errorf("zone changed:\n%s\n---\n%s", before, after)
			}
			if _, err := os.Stat(u.RecordPath); !os.IsNotExist(err) {
				t.Errorf("change record left behind: %v", err)
			}
		})
	}

	t.Run("probe", func(t *testing.T) {
		before := zoneState(t, b)
		u := &Updater{Zone: "example.test", Primary: b.primary, Key: b.key, Timeout: time.Second}
		if zone, primary, err := u.Probe(ctx, "www"); err != nil || zone != e2eZone || primary != b.primary {
			t.Fatalf("probe with the right key: %q %q %v", zone, primary, err)
		}
		u.Key = mustKey("migrate-key:hmac-sha256:d3JvbmctdGVzdC1rZXktZm9yLW1pZ3JhdGlvbi10ZXN0")
		if _, _, err := u.Probe(ctx, "www"); err == nil || !strings.Contains(err.Error(), "BADSIG") {
			t.Fatalf("probe with a wrong key: %v", err)
		}
		if after := zoneState(t, b); after != before {
			t.Fatalf("probe changed the zone:\n%s\n---\n%s", before, after)
		}
	})
	t.Run("malformed key file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "bad.key")
		os.WriteFile(path, []byte(`key "migrate-key" { algorithm hmac-sha256 secret "`+e2eKeySecret+`"; };`), 0o600)
		_, err := LoadKey(path)
		if err == nil || !strings.Contains(err.Error(), path) || hint.Of(err) == "" || strings.Contains(err.Error(), e2eKeySecret) {
			t.Fatalf("malformed key: %v", err)
		}
	})
	t.Run("transfer with wrong key", func(t *testing.T) {
		_, err := Transfer(ctx, b.primary, e2eZone, mustKey("migrate-key:hmac-sha256:d3JvbmctdGVzdC1rZXktZm9yLW1pZ3JhdGlvbi10ZXN0"), time.Second)
		if err == nil || !strings.Contains(err.Error(), "BADSIG") || !strings.Contains(err.Error(), b.primary) {
			t.Fatalf("axfr with a wrong key: %v", err)
		}
		_, err = Transfer(ctx, b.primary, e2eZone, nil, time.Second)
		if err == nil || !strings.Contains(err.Error(), "REFUSED") {
			t.Fatalf("unsigned axfr: %v", err)
		}
	})
}
