package migrate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/migrate-tool/migrate/dnscheck"
)

// MXProbe is what one mail exchanger answered to an SMTP RCPT TO for an
// address of the domain. Nothing is sent: the session ends with RSET and
// QUIT before any DATA.
type MXProbe struct {
	Host   string `json:"host"`
	Pref   int    `json:"preference"`
	Addr   string `json:"addr,omitempty"`
	Backup bool   `json:"backup"` // a higher preference than the best MX
	Rcpt   string `json:"rcpt"`
	// Result is "accepts" (2xx to RCPT TO), "refuses" (5xx), "deferred"
	// (4xx) or "unreachable".
	Result string `json:"result"`
	Reply  string `json:"reply,omitempty"`
}

// SMTPPort is the port MX probes connect to.
const SMTPPort = 25

// probeMXs resolves each MX target on the authoritative servers and asks it
// whether it accepts mail for postmaster@zone.
func probeMXs(ctx context.Context, ds *DNSSection, servers []string, port int, timeout time.Duration) []MXProbe {
	type mx struct {
		pref int
		host string
	}
	var mxs []mx
	best := -1
	for _, r := range ds.Records {
		if r.Type != "MX" {
			continue
		}
		var m mx
		if _, err := fmt.Sscanf(r.Value, "%d %s", &m.pref, &m.host); err != nil {
			continue
		}
		mxs = append(mxs, m)
		if best < 0 || m.pref < best {
			best = m.pref
		}
	}
	slices.SortFunc(mxs, func(a, b mx) int { return a.pref - b.pref })
	domain := strings.TrimSuffix(ds.Zone, ".")
	var out []MXProbe
	for _, m := range mxs {
		p := MXProbe{Host: m.host, Pref: m.pref, Backup: m.pref > best, Rcpt: "postmaster@" + domain}
		addr, err := resolveA(ctx, m.host, servers)
		if err != nil {
			p.Result, p.Reply = "unreachable", err.Error()
			out = append(out, p)
			continue
		}
		p.Addr = addr
		p.Result, p.Reply = ProbeRcpt(ctx, net.JoinHostPort(addr, strconv.Itoa(port)), p.Rcpt, timeout)
		out = append(out, p)
	}
	return out
}

func resolveA(ctx context.Context, name string, servers []string) (string, error) {
	rep, err := dnscheck.Check(ctx, dnscheck.Query{Names: []string{name}, Servers: servers, Timeout: 2 * time.Second})
	if err != nil {
		return "", err
	}
	for _, s := range rep.Servers {
		for _, a := range s.Answers {
			for _, r := range a.Records {
				if r.Type == "A" || r.Type == "AAAA" {
					return r.Value, nil
				}
			}
		}
	}
	return "", fmt.Errorf("%s has no address", name)
}

// ProbeRcpt opens an SMTP session to addr and asks RCPT TO:<rcpt> with a
// null sender; it returns "accepts", "refuses", "deferred" or
// "unreachable" and the server's reply.
func ProbeRcpt(ctx context.Context, addr, rcpt string, timeout time.Duration) (result, reply string) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "unreachable", err.Error()
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	host, _, _ := net.SplitHostPort(addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return "unreachable", "greeting: " + err.Error()
	}
	defer c.Close()
	if err := c.Hello("migrate-plan.invalid"); err != nil {
		return classify(err)
	}
	if err := c.Mail(""); err != nil {
		return classify(err)
	}
	err = c.Rcpt(rcpt)
	c.Reset()
	c.Quit()
	if err != nil {
		return classify(err)
	}
	return "accepts", "250"
}

func classify(err error) (string, string) {
	var te *textproto.Error
	if errors.As(err, &te) {
		switch {
		case te.Code >= 500:
			return "refuses", fmt.Sprintf("%d %s", te.Code, te.Msg)
		case te.Code >= 400:
			return "deferred", fmt.Sprintf("%d %s", te.Code, te.Msg)
		}
	}
	return "unreachable", err.Error()
}
