// Package accesslog parses web server and proxy access logs: Apache common,
// combined and vhost_combined (including Debian's %O variants), nginx
// combined, Pound's LogLevel 1–5 (Pound 2.x and 4.x) and HAProxy httplog,
// each with or without a syslog prefix. The format is detected from the
// first lines or named explicitly.
//
// Parsing is built for tailing busy logs: hand-written scanners, no regular
// expressions, time stamps decoded once per distinct second, and repeated
// strings (clients, hosts, user agents) interned, so a parsed line costs no
// allocation unless the path is kept.
package accesslog

import (
	"errors"
	"net/netip"
	"time"
)

// Format names one log line layout.
type Format string

// The formats Parse understands. Pound3 and Pound4 share their layout with
// VhostCombined and Combined; they are reported as Pound3/Pound4 when the
// syslog tag says the line came from pound.
const (
	Common        Format = "common"         // Apache %h %l %u %t "%r" %>s %b
	Combined      Format = "combined"       // Apache/nginx combined, Debian %O variant
	VhostCombined Format = "vhost_combined" // Apache %v:%p %h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i"
	Pound1        Format = "pound1"         // Pound LogLevel 1 "regular"
	Pound2        Format = "pound2"         // Pound LogLevel 2 "extended"
	Pound3        Format = "pound3"         // Pound LogLevel 3 "vhost_combined"
	Pound4        Format = "pound4"         // Pound LogLevel 4 "combined"
	Pound5        Format = "pound5"         // Pound LogLevel 5 "detailed"
	HAProxy       Format = "haproxy"        // HAProxy option httplog
)

// Record is one parsed request. String fields are shared between records
// (interned) and must not be modified; they stay valid after the line buffer
// is reused.
type Record struct {
	// Time the request was logged, from the line itself or its syslog
	// prefix. Zero when the line carries no time (Pound 1/2 written
	// without syslog): use the time the line was read.
	Time time.Time
	// Client is the remote address as logged (an IP, or a host name when
	// the server resolves names). Addr is Client parsed, when it is an IP.
	Client string
	Addr   netip.Addr
	Method string // "" when the request line is malformed ("-", binary junk)
	Path   string // request target; "" when skipped with SkipPath
	Status int    // 0 when not logged (HAProxy -1 is kept as -1)
	Bytes  int64  // response bytes; 0 for "-"
	// Host is the virtual host (without port) when the format logs it.
	Host      string
	UserAgent string
	Referer   string
	Format    Format
}

// ErrNoMatch is returned by Parse for a line that is not in the parser's
// format (or in no known format while detecting). It is a sentinel so that
// skipping a bad line does not allocate.
var ErrNoMatch = errors.New("line does not match the log format")

// Options tune a Parser. The zero value is fine.
type Options struct {
	// Location is used for time stamps without a zone (HAProxy, syslog).
	// Default time.Local.
	Location *time.Location
	// Now gives the current time, used to pick the year of syslog time
	// stamps, which have none. Default time.Now.
	Now func() time.Time
	// SkipPath leaves Record.Path empty, the one field that costs an
	// allocation per line. Traffic counting does not need it.
	SkipPath bool
	// SkipAgent leaves Record.UserAgent and Record.Referer empty and, once
	// the format is settled (named, or detected), does not read the line
	// past the response size. Counting requests per client needs neither.
	SkipAgent bool
	// DetectLines is how many lines of one format end detection. Default 8.
	DetectLines int
}
