//go:build e2e

package dnscheck

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/migrate-tool/migrate/internal/testbed"
)

// startKnot starts a Knot DNS primary on 127.0.0.1 and a secondary on
// 127.0.0.2, with TSIG-signed NOTIFY, transfers and updates.
func startKnot(t *testing.T) *bed {
	needTools(t, "knotd", "ip")
	ensureLoopback2(t)
	d := t.TempDir()
	b := &bed{dir: d, keyFile: filepath.Join(d, "tsig.key")}
	p1, p2 := freePort(t, "127.0.0.1"), freePort(t, "127.0.0.2")
	b.primary, b.secondary = fmt.Sprintf("127.0.0.1:%d", p1), fmt.Sprintf("127.0.0.2:%d", p2)
	writeFile(t, b.keyFile, fmt.Sprintf("%s:hmac-sha256:%s\n", e2eKeyName, e2eKeySecret))
	common := fmt.Sprintf(`log:
  - target: stderr
    any: info
key:
  - id: %s
    algorithm: hmac-sha256
    secret: %s
`, e2eKeyName, e2eKeySecret)
	writeFile(t, d+"/kp/knot.conf", fmt.Sprintf(`server:
    rundir: "%[1]s/kp"
    listen: 127.0.0.1@%[2]d
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "%[1]s/kp/db"
%[4]s
remote:
  - id: secondary
    address: 127.0.0.2@%[3]d
    key: %[5]s
acl:
  - id: keyed
    key: %[5]s
    action: [transfer, update]
template:
  - id: default
    storage: "%[1]s/kp"
    file: "%%s.zone"
    zonefile-sync: -1
zone:
  - domain: example.test
    notify: secondary
    acl: keyed
`, d, p1, p2, common, e2eKeyName))
	writeFile(t, d+"/ks/knot.conf", fmt.Sprintf(`server:
    rundir: "%[1]s/ks"
    listen: 127.0.0.2@%[3]d
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "%[1]s/ks/db"
%[4]s
remote:
  - id: primary
    address: 127.0.0.1@%[2]d
    key: %[5]s
acl:
  - id: keyed
    key: %[5]s
    action: [transfer, notify]
template:
  - id: default
    storage: "%[1]s/ks"
    file: "%%s.zone"
    zonefile-sync: -1
zone:
  - domain: example.test
    master: primary
    acl: keyed
`, d, p1, p2, common, e2eKeyName))
	writeFile(t, d+"/kp/example.test.zone", zoneText)
	writeFile(t, d+"/kp/db/.keep", "")
	writeFile(t, d+"/ks/db/.keep", "")
	testbed.StartDaemon(t, d, "knot-primary", nil, "knotd", "-c", d+"/kp/knot.conf")
	waitSOA(t, b.primary, false)
	testbed.StartDaemon(t, d, "knot-secondary", nil, "knotd", "-c", d+"/ks/knot.conf")
	waitSOA(t, b.secondary, false)
	var err error
	if b.key, err = LoadKey(b.keyFile); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestE2EKnot runs the same check, update, confirm and restore against
// Knot DNS, and the refusals.
func TestE2EKnot(t *testing.T) {
	b := startKnot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	q := Query{Names: []string{"www", "app"}, Zone: "example.test", Servers: []string{b.primary, b.secondary}, Timeout: 2 * time.Second}
	rep, err := Check(ctx, q)
	if err != nil || !rep.OK {
		t.Fatalf("check: %v %+v", err, rep)
	}
	u := &Updater{Zone: "example.test", Primary: b.primary, Auth: []string{b.primary, b.secondary}, Key: b.key,
		Timeout: 2 * time.Second, ConfirmTimeout: 20 * time.Second, RecordPath: filepath.Join(b.dir, "set.json")}
	if ch, err := u.LowerTTL(ctx, "www", 3); err != nil || ch.Status != "confirmed" {
		t.Fatalf("lower-ttl: %v %+v", err, ch)
	}
	set, err := u.Set(ctx, "www", "A", []string{newAddr}, 0)
	if err != nil || set.Status != "confirmed" || set.New[0].TTL != 3 {
		t.Fatalf("set: %v %+v", err, set)
	}
	t.Logf("knot secondary served the change after %s", set.Servers[1].At.Sub(set.Applied))
	q.Expect = []Expectation{{Name: "www", Value: newAddr}}
	if last, err := Watch(ctx, q, WatchOptions{Interval: 200 * time.Millisecond}); err != nil || !last.Done {
		t.Fatalf("watch: %v %+v", err, last)
	}

	// Refusals leave the zone as it is.
	before := zoneState(t, b)
	bad, _ := ParseKey("migrate-key:hmac-sha256:d3JvbmctdGVzdC1rZXktZm9yLW1pZ3JhdGlvbi10ZXN0")
	for _, k := range []*Key{bad, nil} {
		uu := *u
		uu.Key, uu.RecordPath = k, filepath.Join(b.dir, "bad.json")
		_, err := uu.Set(ctx, "www", "A", []string{"192.0.2.77"}, 0)
		if err == nil || !strings.Contains(err.Error(), b.primary) {
			t.Fatalf("key %v: %v", k, err)
		}
		if _, ok := errorsAsRcode(err); !ok {
			t.Errorf("key %v: no rcode in %v", k, err)
		}
		t.Logf("knot, key %v: %v", k, err)
	}
	if after := zoneState(t, b); after != before {
		t.Fatalf("zone changed by refused updates:\n%s\n---\n%s", before, after)
	}

	back, err := u.Restore(ctx, set)
	if err != nil || back.Status != "confirmed" {
		t.Fatalf("restore: %v %+v", err, back)
	}
	q.Expect = []Expectation{{Name: "www", Value: oldAddr}}
	if rep, err := Check(ctx, q); err != nil || !rep.OK {
		t.Fatalf("after restore: %v %+v", err, rep.Flags)
	}
	// The same record again: Knot must refuse on the prerequisite.
	_, err = u.Restore(ctx, set)
	if re, ok := errorsAsRcode(err); !ok || !re.PrerequisiteFailed() {
		t.Fatalf("stale restore on knot: %v", err)
	}
	t.Logf("knot, stale restore: %v", err)
}
