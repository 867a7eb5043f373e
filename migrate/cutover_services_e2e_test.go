//go:build e2e

package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/migrate-tool/migrate/internal/testbed"
	"github.com/migrate-tool/migrate/migrate"
)

func planService(t *testing.T, bed *testbed.Bed, service string, port int) string {
	dir := filepath.Join(t.TempDir(), service)
	m, err := migrate.Create(dir, &migrate.Plan{Version: migrate.PlanVersion, Name: service, Created: time.Now().UTC(),
		From: bed.Old.SSHSpec(), To: bed.New.SSHSpec(), Service: service, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	return dir
}

// sendMail runs one SMTP session; it returns nil once the server has
// accepted the message for delivery.
func sendMail(addr, subject string) error {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	cl, err := smtp.NewClient(c, "old")
	if err != nil {
		c.Close()
		return fmt.Errorf("greeting: %w", err)
	}
	defer cl.Close()
	if err := cl.Hello("client.test"); err != nil {
		return err
	}
	if err := cl.Mail("t@client.test"); err != nil {
		return err
	}
	if err := cl.Rcpt("www-data@localhost"); err != nil {
		return err
	}
	w, err := cl.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "Subject: %s\r\n\r\nsent during the cutover\r\n", subject)
	if err := w.Close(); err != nil {
		return err
	}
	cl.Quit()
	return nil
}

func TestCutoverPostfix(t *testing.T) {
	bed := testbed.New(t, testbed.Options{PrivateDirs: []string{"/var/spool/postfix", "/var/mail", "/var/lib/postfix"}})
	testbed.RequireTools(t, "postfix")
	old := bed.Old
	old.MustExec(t, "mkdir", "-p", "/srv/pf")
	old.MustExec(t, "cp", "-a", "/etc/postfix/.", "/srv/pf/")
	old.MustExec(t, "postconf", "-c", "/srv/pf", "-e", "inet_interfaces = all", "inet_protocols = ipv4", "mydestination = localhost")
	masterCF, err := old.ReadFile("/srv/pf/master.cf")
	if err != nil {
		t.Fatal(err)
	}
	pf := old.Start(t, "postfix", "postfix", "-c", "/srv/pf", "start-fg")
	addr := net.JoinHostPort(old.Addr, "25")
	testbed.WaitFor(t, "postfix on old", 20*time.Second, func() error { return sendMail(addr, "warm-up") })
	dir := planService(t, bed, "postfix", 25)
	if out, errOut, code := bed.Migrate(t, "cutover", dir, "--prepare-only"); code != 0 {
		t.Fatalf("prepare: exit %d\n%s\n%s", code, out, errOut)
	}

	// Mail keeps coming: 4 senders, one session each every 50 ms.
	var accepted sync.Map
	var nAccepted, nFailed, nRetried atomic.Int64
	var failures []string
	var fmu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for s := 0; s < 4; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				subject := fmt.Sprintf("m-%d-%d", s, i)
				// Like a sending MTA: a session cut before the message was
				// accepted is tried again; a refused connection is a failure.
				var err error
				for try := 0; try < 3; try++ {
					if err = sendMail(addr, subject); err == nil || errors.Is(err, syscall.ECONNREFUSED) {
						break
					}
					nRetried.Add(1)
				}
				if err != nil {
					nFailed.Add(1)
					fmu.Lock()
					failures = append(failures, subject+": "+err.Error())
					fmu.Unlock()
					continue
				}
				accepted.Store(subject, true)
				nAccepted.Add(1)
			}
		}()
	}
	time.Sleep(2 * time.Second)
	out, errOut, code := bed.Migrate(t, "cutover", dir)
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	if code != 0 {
		t.Fatalf("cutover: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("cutover:\n%s%s", out, errOut)
	if b, err := old.ReadFile("/var/lib/migrate/cutover/postfix/stop.log"); err == nil {
		t.Logf("old host's stop.log:\n%s", b)
	}
	t.Logf("smtp: %d messages accepted, %d sessions cut and tried again, %d failed %v", nAccepted.Load(), nRetried.Load(), nFailed.Load(), failures)
	select {
	case <-pf.Done():
	default:
		t.Fatal("postfix still runs on old")
	}
	if nFailed.Load() != 0 {
		t.Errorf("%d SMTP sessions failed during the cutover: %v", nFailed.Load(), failures)
	}
	// The stop changed master.cf for a moment (the smtp service disabled
	// while sessions finished); both hosts have the original.
	for _, f := range []struct {
		h    *testbed.Node
		path string
	}{{old, "/srv/pf/master.cf"}, {bed.New, "/srv/migrate/postfix/root/srv/pf/master.cf"}} {
		if b, err := f.h.ReadFile(f.path); err != nil || string(b) != string(masterCF) {
			t.Errorf("%s on %s is not the original (err %v):\n%s", f.path, f.h.Name, err, b)
		}
	}
	// Every accepted message is in new's mailbox, exactly once.
	mbox := "/srv/migrate/postfix/root/var/mail/www-data"
	var lastMissing string
	defer func() {
		if !t.Failed() || lastMissing == "" {
			return
		}
		// Where the missing message is: the queues and mailboxes of both
		// hosts, and new's Postfix log.
		for _, h := range []*testbed.Node{old, bed.New} {
			out, _ := h.Exec(context.Background(), "sh", "-c", "grep -rl 'Subject: "+lastMissing+"' /var/spool/postfix /var/mail /srv/migrate/postfix/root/var/spool/postfix /srv/migrate/postfix/root/var/mail 2>/dev/null | xargs -r ls -l; "+
				"find /var/spool/postfix/incoming /var/spool/postfix/active /var/spool/postfix/deferred /var/spool/postfix/hold /var/spool/postfix/maildrop /srv/migrate/postfix/root/var/spool/postfix/incoming /srv/migrate/postfix/root/var/spool/postfix/active /srv/migrate/postfix/root/var/spool/postfix/deferred -type f 2>/dev/null | xargs -r ls -l")
			t.Logf("%s: where %s is:\n%s", h.Name, lastMissing, out)
		}
	}()
	testbed.WaitFor(t, "every accepted message delivered on new", 60*time.Second, func() error {
		b, err := bed.New.ReadFile(mbox)
		if err != nil {
			return err
		}
		var missing, twice []string
		accepted.Range(func(k, _ any) bool {
			// Exactly once, also a message whose session was cut and tried
			// again: the old Postfix must not cut a session after it queued
			// the message (SMTP's duplicate window, RFC 1047).
			switch n := strings.Count(string(b), "Subject: "+k.(string)+"\n"); {
			case n == 0:
				missing = append(missing, k.(string))
			case n > 1:
				twice = append(twice, k.(string))
			}
			return true
		})
		if len(twice) > 0 {
			t.Fatalf("delivered more than once: %v", twice)
		}
		if len(missing) > 0 {
			lastMissing = missing[0]
			return fmt.Errorf("%d of %d accepted messages not delivered yet (e.g. %s)", len(missing), nAccepted.Load(), missing[0])
		}
		return nil
	})
}

func TestCutoverBIND(t *testing.T) {
	bed := testbed.New(t, testbed.Options{})
	testbed.RequireTools(t, "named")
	old := bed.Old
	conf := `options { directory "/srv/bind"; pid-file "named.pid"; session-keyfile "session.key";
  listen-on port 53 { any; }; listen-on-v6 { none; }; recursion no; dnssec-validation no; };
zone "example.test" { type primary; file "example.test.db"; };
`
	zone := "$TTL 300\n@ IN SOA ns1 hostmaster 7 3600 600 86400 300\n@ NS ns1\n@ MX 10 mail\nns1 A 192.0.2.1\n" +
		"www A 192.0.2.10\nmail A 192.0.2.25\napp CNAME www\n"
	old.WriteFile(t, "/srv/bind/named.conf", []byte(conf), 0o644)
	old.WriteFile(t, "/srv/bind/example.test.db", []byte(zone), 0o644)
	named := old.Start(t, "named", "named", "-g", "-c", "/srv/bind/named.conf")
	server := net.JoinHostPort(old.Addr, "53")
	var retried atomic.Int64
	// Like a stub resolver (dig +time=2 +tries=3): a query the old named
	// had read when it stopped, or a TCP connection it reset, is asked
	// again; only a query that fails every try counts as failed.
	query := func(net string, name string) error {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		c := &dns.Client{Net: net, Timeout: 2 * time.Second}
		var r *dns.Msg
		var err error
		for try := 0; try < 3; try++ {
			if r, _, err = c.Exchange(m, server); err == nil {
				break
			}
			retried.Add(1)
		}
		if err != nil {
			return err
		}
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
			return fmt.Errorf("%s %s: rcode %s, %d answers", net, name, dns.RcodeToString[r.Rcode], len(r.Answer))
		}
		return nil
	}
	testbed.WaitFor(t, "named on old", 15*time.Second, func() error { return query("udp", "www.example.test") })
	dir := planService(t, bed, "bind9", 53)
	if out, errOut, code := bed.Migrate(t, "cutover", dir, "--prepare-only"); code != 0 {
		t.Fatalf("prepare: exit %d\n%s\n%s", code, out, errOut)
	}

	// Queries keep coming over UDP and TCP, each answered or failed once.
	var ok, failed atomic.Int64
	var failures []string
	var fmu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		proto := []string{"udp", "tcp"}[w%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5000; i++ {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				name := []string{"www.example.test", "mail.example.test", "app.example.test"}[i%3]
				if err := query(proto, name); err != nil {
					failed.Add(1)
					fmu.Lock()
					failures = append(failures, proto+" "+name+": "+err.Error())
					fmu.Unlock()
					continue
				}
				ok.Add(1)
			}
		}()
	}
	time.Sleep(2 * time.Second)
	out, errOut, code := bed.Migrate(t, "cutover", dir)
	if code != 0 {
		close(stop)
		wg.Wait()
		t.Fatalf("cutover: exit %d\n%s\n%s", code, out, errOut)
	}
	// drain sees the DNS traffic through the proxy (its counter: UDP and
	// TCP are not in an access log) and does not end while it flows.
	dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer dcancel()
	drain := bed.MigrateCmd(dctx, t, "drain", dir, "--watch", "--quiet-for", "3s", "--interval", "500ms", "--threshold", "0")
	var dout, derr strings.Builder
	drain.Stdout, drain.Stderr = &dout, &derr
	if err := drain.Start(); err != nil {
		t.Fatal(err)
	}
	drained := make(chan error, 1)
	go func() { drained <- drain.Wait() }()
	select {
	case err := <-drained:
		close(stop)
		wg.Wait()
		t.Fatalf("drain ended while queries flowed: %v\n%s\n%s", err, dout.String(), derr.String())
	case <-time.After(6 * time.Second):
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-drained:
		if err != nil {
			t.Fatalf("drain: %v\n%s\n%s", err, dout.String(), derr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("drain did not end after the queries stopped\n%s\n%s", dout.String(), derr.String())
	}
	if !strings.Contains(dout.String(), "(tcp/udp)") {
		t.Fatalf("drain's summary does not show the DNS traffic:\n%s", dout.String())
	}
	t.Logf("cutover:\n%s%s", out, errOut)
	t.Logf("drain:\n%s", dout.String())
	t.Logf("dns: %d queries answered, %d failed, %d tries repeated", ok.Load(), failed.Load(), retried.Load())
	select {
	case <-named.Done():
	default:
		t.Fatal("named still runs on old")
	}
	// Through the proxy on old's address, every name answers, on both protocols.
	for _, proto := range []string{"udp", "tcp"} {
		for _, name := range []string{"www.example.test", "mail.example.test", "app.example.test"} {
			for i := 0; i < 5; i++ {
				if err := query(proto, name); err != nil {
					t.Errorf("after cutover: %v", err)
				}
			}
		}
	}
	if failed.Load() != 0 {
		t.Fatalf("%d queries failed during the cutover: %v", failed.Load(), failures)
	}
	if ok.Load() < 500 {
		t.Fatalf("only %d queries answered", ok.Load())
	}
}
