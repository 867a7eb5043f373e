package dnscheck

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/miekg/dns"

	"github.com/migrate-tool/migrate/internal/hint"
)

// ErrTimeout is wrapped by errors from servers that did not answer in time.
var ErrTimeout = errors.New("no answer")

// RcodeError is a DNS answer that refused an operation: the server, the
// operation and the response code (or TSIG error) are kept for the caller.
type RcodeError struct {
	Op     string // "update example.test", "soa www.example.test", ...
	Server string // ADDR:PORT
	Rcode  int    // DNS rcode, or a TSIG error (BADSIG, BADKEY, BADTIME)
}

func (e *RcodeError) Error() string {
	return fmt.Sprintf("%s at %s: %s", e.Op, e.Server, rcodeName(e.Rcode))
}

// PrerequisiteFailed reports whether the server rejected an update because
// the data changed since it was read (RFC 2136 prerequisites).
func (e *RcodeError) PrerequisiteFailed() bool {
	switch e.Rcode {
	case dns.RcodeYXRrset, dns.RcodeNXRrset, dns.RcodeYXDomain, dns.RcodeNameError:
		return true
	}
	return false
}

func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", rc)
}

// rcodeHint says what to do about a refused operation.
func rcodeHint(rc int, update bool) string {
	switch rc {
	case dns.RcodeBadSig, dns.RcodeBadKey:
		return "the TSIG key does not match the server's: check the key name, algorithm and secret in --tsig-key"
	case dns.RcodeBadTime:
		return "the TSIG time check failed: the clocks of this machine and the server differ by more than 5 minutes"
	case dns.RcodeRefused:
		if update {
			return "the server does not allow this update: send it to the primary (--server) signed with a key its allow-update names (--tsig-key or $" + KeyEnv + ")"
		}
		return "the server refused: it may not serve this zone, or not allow this query (zone transfers need a key in allow-transfer)"
	case dns.RcodeNotAuth:
		return "the server is not authoritative for this zone or not authorised to change it: check --zone, send updates to the primary (--server) and sign them with --tsig-key"
	case dns.RcodeYXRrset, dns.RcodeNXRrset, dns.RcodeYXDomain, dns.RcodeNameError:
		if update {
			return "the record changed since it was read (a concurrent edit); nothing was changed: run the command again to work from the current data"
		}
		return "the name does not exist in the zone"
	case dns.RcodeNotZone:
		return "the name is not inside the zone: check --zone"
	case dns.RcodeServerFailure:
		return "the server failed: look at its log (for a secondary, the zone may not be loaded)"
	}
	return "look at the server's log for why it refused"
}

// newRcodeError wraps an rcode with the matching hint.
func newRcodeError(op, server string, rc int, update bool) error {
	return hint.With(&RcodeError{Op: op, Server: server, Rcode: rc}, rcodeHint(rc, update))
}

// netError classifies a transport failure into a one-line error with hint.
func netError(op, server string, err error) error {
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return hint.With(fmt.Errorf("%s at %s: %w (timed out)", op, server, ErrTimeout),
			"check the address and port, and that the server is running and reachable (raise --timeout for slow links)")
	}
	if errors.Is(err, dns.ErrSig) || errors.Is(err, dns.ErrAuth) || errors.Is(err, dns.ErrSecret) || errors.Is(err, dns.ErrTime) {
		return hint.With(fmt.Errorf("%s at %s: answer failed TSIG verification: %w", op, server, err),
			"the TSIG key does not match the server's: check the key name, algorithm and secret in --tsig-key")
	}
	return hint.With(fmt.Errorf("%s at %s: %w", op, server, err),
		"check the address and port, and that the server is running and reachable")
}
