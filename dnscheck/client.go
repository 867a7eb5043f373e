package dnscheck

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/miekg/dns"
)

// DefaultTimeout is the per-query timeout when none is given.
const DefaultTimeout = 3 * time.Second

// client sends single DNS messages: queries over UDP with a TCP retry when
// the answer is truncated, updates and transfers over TCP. Each message
// gets one attempt bounded by timeout; retrying is left to the caller
// (Watch polls, Confirm polls until its deadline).
type client struct {
	timeout time.Duration
	key     *Key
	log     *slog.Logger
}

func newClient(timeout time.Duration, key *Key, log *slog.Logger) *client {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &client{timeout: timeout, key: key, log: log}
}

// HostPort adds port to addr unless it already has one ("192.0.2.1",
// "[::1]:53", "::1" and "ns:5353" are all accepted).
func HostPort(addr string, port int) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	if port == 0 {
		port = 53
	}
	return net.JoinHostPort(addr, strconv.Itoa(port))
}

// query asks server one question. recurse sets RD (for resolvers).
func (c *client) query(ctx context.Context, server, name string, qtype uint16, recurse bool) (*dns.Msg, time.Duration, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = recurse
	m.SetEdns0(1232, false)
	r, rtt, err := c.exchange(ctx, "udp", server, m)
	if err == nil && r.Truncated {
		c.log.Debug("truncated answer, retrying over tcp", "server", server, "name", name, "type", dns.TypeToString[qtype])
		m.Id = dns.Id()
		var rtt2 time.Duration
		r, rtt2, err = c.exchange(ctx, "tcp", server, m)
		rtt += rtt2
	}
	return r, rtt, err
}

// exchange sends m once over network, signing it when the client has a
// key. A TSIG error in the answer comes back as the answer with a nil
// error, so callers see it through tsigError.
func (c *client) exchange(ctx context.Context, network, server string, m *dns.Msg) (*dns.Msg, time.Duration, error) {
	dc := &dns.Client{Net: network, Timeout: c.timeout}
	if c.key != nil {
		dc.TsigSecret = c.key.tsig()
		m.SetTsig(c.key.Name, c.key.Algorithm, 300, time.Now().Unix())
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	r, rtt, err := dc.ExchangeContext(ctx, m, server)
	if err != nil && r != nil && r.Id == m.Id && tsigError(r) != 0 {
		// The server rejected our signature; its answer is unsigned.
		return r, rtt, nil
	}
	return r, rtt, err
}

// tsigError returns the TSIG error code in r, or 0.
func tsigError(r *dns.Msg) int {
	if t := r.IsTsig(); t != nil {
		return int(t.Error)
	}
	return 0
}

// answerCode is the rcode of r with a TSIG error taking precedence.
func answerCode(r *dns.Msg) int {
	if te := tsigError(r); te != 0 {
		return te
	}
	return r.Rcode
}
