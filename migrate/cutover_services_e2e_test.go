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

// postfixBed runs Postfix on old (configuration in /srv/pf) and prepares
// its migration: shipped and started on new, ready for the cutover.
func postfixBed(t *testing.T) (bed *testbed.Bed, pf *testbed.Proc, masterCF []byte, dir string) {
	bed = testbed.New(t, testbed.Options{PrivateDirs: []string{"/var/spool/postfix", "/var/mail", "/var/lib/postfix"}})
	testbed.RequireTools(t, "postfix")
	old := bed.Old
	old.MustExec(t, "mkdir", "-p", "/srv/pf")
	old.MustExec(t, "cp", "-a", "/etc/postfix/.", "/srv/pf/")
	old.MustExec(t, "postconf", "-c", "/srv/pf", "-e", "inet_interfaces = all", "inet_protocols = ipv4", "mydestination = localhost")
	masterCF, err := old.ReadFile("/srv/pf/master.cf")
	if err != nil {
		t.Fatal(err)
	}
	pf = old.Start(t, "postfix", "postfix", "-c", "/srv/pf", "start-fg")
	addr := net.JoinHostPort(old.Addr, "25")
	testbed.WaitFor(t, "postfix on old", 20*time.Second, func() error { return sendMail(addr, "warm-up") })
	dir = planService(t, bed, "postfix", 25)
	if out, errOut, code := bed.Migrate(t, "cutover", dir, "--prepare-only"); code != 0 {
		t.Fatalf("prepare: exit %d\n%s\n%s", code, out, errOut)
	}
	return bed, pf, masterCF, dir
}

// A cutover of Postfix that fails after the old one stopped (the drill
// fails the restart on new) rolls back: the old Postfix starts again with
// its own master.cf (the stop had disabled its smtp service for a moment)
// and delivers what it had queued and what comes after.
func TestCutoverPostfixRollback(t *testing.T) {
	bed, _, masterCF, dir := postfixBed(t)
	old := bed.Old
	addr := net.JoinHostPort(old.Addr, "25")
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := old.Exec(context.Background(), "sh", "-c", "ps -eo pid,ppid,args; ss -ltnp; tail -20 /var/lib/migrate/cutover/postfix/hold.log")
			t.Logf("old host:\n%s", out)
		}
	})
	load := startSMTPLoad(addr)
	time.Sleep(2 * time.Second)
	out, errOut, code := bed.Migrate(t, "cutover", dir, "--drill", migrate.StepRestart)
	time.Sleep(2 * time.Second)
	load.stop()
	t.Logf("smtp: %s", load)
	if code == 0 {
		t.Fatalf("a drill exited 0:\n%s", out)
	}
	// The old Postfix binds beside the held socket (SO_REUSEPORT), which
	// the holder lets go once it listens: no connection refused.
	if len(load.failures) != 0 {
		t.Errorf("%d SMTP sessions failed during the rollback: %v", len(load.failures), load.failures)
	}
	if !strings.Contains(errOut, "rolled back") {
		t.Fatalf("stderr does not say it was rolled back:\n%s", errOut)
	}
	if b, err := old.ReadFile("/srv/pf/master.cf"); err != nil || string(b) != string(masterCF) {
		t.Errorf("old's master.cf is not the original after the rollback (err %v):\n%s", err, b)
	}
	if b, err := old.ReadFile("/var/lib/migrate/cutover/postfix/stop.log"); err == nil {
		t.Logf("old host's stop.log:\n%s", b)
	}
	// The old Postfix (started by the holding proxy) takes mail again and
	// delivers it on old.
	testbed.WaitFor(t, "postfix on old after the rollback", 30*time.Second, func() error { return sendMail(addr, "after-rollback") })
	testbed.WaitFor(t, "mail delivered on old after the rollback", 30*time.Second, func() error {
		b, err := old.ReadFile("/var/mail/www-data")
		if err != nil {
			return err
		}
		if n := strings.Count(string(b), "Subject: after-rollback\n"); n != 1 {
			return fmt.Errorf("%d copies in old's mailbox", n)
		}
		return nil
	})
	if out, err := old.Exec(context.Background(), "sh", "-c", "ps -eo comm | grep -c '^master$'"); err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Errorf("postfix masters on old after the rollback: %s (%v)", out, err)
	}
	// Every message accepted during the drill was accepted by the old
	// Postfix (the new one was never released to): delivered on old once.
	load.deliveredOnce(t, old, "/var/mail/www-data")
	// The migration can go on: a second cutover succeeds.
	if out, errOut, code := bed.Migrate(t, "cutover", dir); code != 0 {
		t.Fatalf("cutover after rollback: exit %d\n%s\n%s", code, out, errOut)
	}
	if err := sendMail(addr, "after-cutover"); err != nil {
		t.Fatalf("mail through the proxy to new: %v", err)
	}
}

func TestCutoverPostfix(t *testing.T) {
	bed, pf, masterCF, dir := postfixBed(t)
	old := bed.Old
	addr := net.JoinHostPort(old.Addr, "25")

	load := startSMTPLoad(addr)
	time.Sleep(2 * time.Second)
	out, errOut, code := bed.Migrate(t, "cutover", dir)
	time.Sleep(2 * time.Second)
	load.stop()
	if code != 0 {
		t.Fatalf("cutover: exit %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("cutover:\n%s%s", out, errOut)
	if b, err := old.ReadFile("/var/lib/migrate/cutover/postfix/stop.log"); err == nil {
		t.Logf("old host's stop.log:\n%s", b)
	}
	t.Logf("smtp: %s", load)
	select {
	case <-pf.Done():
	default:
		t.Fatal("postfix still runs on old")
	}
	if len(load.failures) != 0 {
		t.Errorf("%d SMTP sessions failed during the cutover: %v", len(load.failures), load.failures)
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
	load.deliveredOnce(t, bed.New, "/srv/migrate/postfix/root/var/mail/www-data")
}

// smtpLoad keeps mail coming: 4 senders, one session each every 50 ms.
// Like a sending MTA, a session cut before the message was accepted is
// tried again; a refused connection, or a session cut three times, is a
// failure.
type smtpLoad struct {
	addr     string
	done     chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	accepted []string
	retried  int
	failures []string
}

func startSMTPLoad(addr string) *smtpLoad {
	l := &smtpLoad{addr: addr, done: make(chan struct{})}
	for s := 0; s < 4; s++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; i < 2000; i++ {
				select {
				case <-l.done:
					return
				case <-time.After(50 * time.Millisecond):
				}
				subject := fmt.Sprintf("m-%d-%d", s, i)
				var err error
				tries := 0
				for ; tries < 3; tries++ {
					if err = sendMail(addr, subject); err == nil || errors.Is(err, syscall.ECONNREFUSED) {
						break
					}
				}
				l.mu.Lock()
				l.retried += min(tries, 2)
				if err != nil {
					l.failures = append(l.failures, subject+": "+err.Error())
				} else {
					l.accepted = append(l.accepted, subject)
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *smtpLoad) stop() {
	close(l.done)
	l.wg.Wait()
}

func (l *smtpLoad) String() string {
	return fmt.Sprintf("%d messages accepted, %d sessions cut and tried again, %d failed %v", len(l.accepted), l.retried, len(l.failures), l.failures)
}

// deliveredOnce waits until every accepted message is in mbox on h, and
// fails if one is there twice: also a message whose session was cut and
// tried again, for Postfix must not cut a session after it queued the
// message (SMTP's duplicate window, RFC 1047).
func (l *smtpLoad) deliveredOnce(t *testing.T, h *testbed.Node, mbox string) {
	t.Helper()
	var lastMissing string
	defer func() {
		if !t.Failed() || lastMissing == "" {
			return
		}
		// Where the missing message is: the queues and mailboxes.
		out, _ := h.Exec(context.Background(), "sh", "-c", "grep -rl 'Subject: "+lastMissing+"' /var/spool/postfix /var/mail /srv/migrate/postfix/root/var/spool/postfix /srv/migrate/postfix/root/var/mail 2>/dev/null | xargs -r ls -l; "+
			"find /var/spool/postfix /srv/migrate/postfix/root/var/spool/postfix -path '*/incoming/*' -o -path '*/active/*' -o -path '*/deferred/*' -o -path '*/hold/*' -type f 2>/dev/null | xargs -r ls -l")
		t.Logf("%s: where %s is:\n%s", h.Name, lastMissing, out)
	}()
	// A message the old Postfix was delivering when the reload restarted
	// its qmgr was put back in the incoming queue 60 s ahead
	// (qmgr_active_feed); the stop sets that back once every process has
	// exited, so it is delivered at once too.
	testbed.WaitFor(t, "every accepted message delivered on "+h.Name, 60*time.Second, func() error {
		b, err := h.ReadFile(mbox)
		if err != nil {
			return err
		}
		var missing, twice []string
		for _, subject := range l.accepted {
			switch n := strings.Count(string(b), "Subject: "+subject+"\n"); {
			case n == 0:
				missing = append(missing, subject)
			case n > 1:
				twice = append(twice, subject)
			}
		}
		if len(twice) > 0 {
			t.Fatalf("delivered more than once: %v", twice)
		}
		if len(missing) > 0 {
			lastMissing = missing[0]
			return fmt.Errorf("%d of %d accepted messages not delivered yet (e.g. %s)", len(missing), len(l.accepted), missing[0])
		}
		return nil
	})
}

// bindBed runs named on old, serving example.test, and prepares its
// migration. query asks old's address like a stub resolver (dig +time=2
// +tries=3): a query the old named had read when it stopped, or a TCP
// connection it reset, is asked again (counted in retried); only a query
// that fails every try is an error.
func bindBed(t *testing.T) (bed *testbed.Bed, named *testbed.Proc, query func(proto, name string) error, retried *atomic.Int64, dir string) {
	bed = testbed.New(t, testbed.Options{})
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
	named = old.Start(t, "named", "named", "-g", "-c", "/srv/bind/named.conf")
	server := net.JoinHostPort(old.Addr, "53")
	retried = new(atomic.Int64)
	// Like a stub resolver (dig +time=2 +tries=3): a query the old named
	// had read when it stopped, or a TCP connection it reset, is asked
	// again; only a query that fails every try counts as failed.
	query = func(net string, name string) error {
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
	dir = planService(t, bed, "bind9", 53)
	if out, errOut, code := bed.Migrate(t, "cutover", dir, "--prepare-only"); code != 0 {
		t.Fatalf("prepare: exit %d\n%s\n%s", code, out, errOut)
	}

	return bed, named, query, retried, dir
}

// Queries keep coming over UDP and TCP: 6 clients, one query each every
// 10 ms, until stop is called; it returns what was answered and failed.
func startDNSLoad(query func(proto, name string) error) (stop func() (ok int64, failures []string)) {
	var n atomic.Int64
	var failures []string
	var mu sync.Mutex
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		proto := []string{"udp", "tcp"}[w%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5000; i++ {
				select {
				case <-done:
					return
				case <-time.After(10 * time.Millisecond):
				}
				name := []string{"www.example.test", "mail.example.test", "app.example.test"}[i%3]
				if err := query(proto, name); err != nil {
					mu.Lock()
					failures = append(failures, proto+" "+name+": "+err.Error())
					mu.Unlock()
					continue
				}
				n.Add(1)
			}
		}()
	}
	return func() (int64, []string) {
		close(done)
		wg.Wait()
		return n.Load(), failures
	}
}

// A cutover of BIND that fails after the old named stopped rolls back:
// named starts again and binds beside the held sockets (SO_REUSEPORT), and
// every query is answered, by the old named.
func TestCutoverBINDRollback(t *testing.T) {
	bed, _, query, retried, dir := bindBed(t)
	stop := startDNSLoad(query)
	time.Sleep(2 * time.Second)
	out, errOut, code := bed.Migrate(t, "cutover", dir, "--drill", migrate.StepRestart)
	time.Sleep(2 * time.Second)
	ok, failures := stop()
	t.Logf("dns: %d queries answered, %d failed, %d tries repeated", ok, len(failures), retried.Load())
	if code == 0 || !strings.Contains(errOut, "rolled back") {
		t.Fatalf("a drill: exit %d\n%s\n%s", code, out, errOut)
	}
	if len(failures) != 0 {
		t.Fatalf("%d queries failed during the rollback: %v", len(failures), failures)
	}
	out2, err := bed.Old.Exec(context.Background(), "sh", "-c", "ss -Hlunp 'sport = :53'; ss -Hltnp 'sport = :53'")
	if err != nil || !strings.Contains(string(out2), "named") || strings.Contains(string(out2), "migrate") {
		t.Fatalf("after the rollback, old's port 53 is not named's alone (%v):\n%s", err, out2)
	}
	if out, errOut, code := bed.Migrate(t, "cutover", dir); code != 0 {
		t.Fatalf("cutover after rollback: exit %d\n%s\n%s", code, out, errOut)
	}
	if err := query("udp", "www.example.test"); err != nil {
		t.Fatalf("through the proxy to new: %v", err)
	}
}

func TestCutoverBIND(t *testing.T) {
	bed, named, query, retried, dir := bindBed(t)
	stop := startDNSLoad(query)
	time.Sleep(2 * time.Second)
	out, errOut, code := bed.Migrate(t, "cutover", dir)
	if code != 0 {
		stop()
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
		stop()
		t.Fatalf("drain ended while queries flowed: %v\n%s\n%s", err, dout.String(), derr.String())
	case <-time.After(6 * time.Second):
	}
	ok, failures := stop()
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
	t.Logf("dns: %d queries answered, %d failed, %d tries repeated", ok, len(failures), retried.Load())
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
	if len(failures) != 0 {
		t.Fatalf("%d queries failed during the cutover: %v", len(failures), failures)
	}
	if ok < 500 {
		t.Fatalf("only %d queries answered", ok)
	}
}
