package host

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"unicode"
)

// Spec is a parsed host spec. Host is empty and Local true for "local".
// Port is 0 when the spec names none (ssh_config or 22 decide).
type Spec struct {
	Raw   string
	Local bool
	User  string
	Host  string
	Port  int
}

// ParseSpec parses a host spec: "local", "host", "user@host",
// "user@host:port", "ssh://[user@]host[:port]", with IPv6 addresses in
// brackets ("root@[fd00::1]:2222"). A bare IPv6 address without a port
// is accepted too ("fd00::1").
func ParseSpec(spec string) (Spec, error) {
	s := Spec{Raw: spec}
	if spec == "local" {
		s.Local = true
		return s, nil
	}
	if spec == "" {
		return s, fmt.Errorf("empty host spec")
	}
	if strings.ContainsAny(spec, " \t\r\n") {
		return s, fmt.Errorf("host spec %q: contains white space", spec)
	}
	rest := spec
	if strings.Contains(spec, "://") {
		u, err := url.Parse(spec)
		if err != nil {
			return s, fmt.Errorf("host spec %q: %w", spec, unwrapURLError(err))
		}
		if u.Scheme != "ssh" {
			return s, fmt.Errorf("host spec %q: unsupported scheme %q (only ssh://)", spec, u.Scheme)
		}
		if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" {
			return s, fmt.Errorf("host spec %q: unexpected path or query after the host", spec)
		}
		if _, hasPw := u.User.Password(); hasPw {
			return s, fmt.Errorf("host spec %q: passwords in host specs are not supported", spec)
		}
		if u.User != nil {
			s.User = u.User.Username()
			if s.User == "" {
				return s, fmt.Errorf("host spec %q: empty user name", spec)
			}
		}
		rest = u.Host
	} else if i := strings.LastIndex(rest, "@"); i >= 0 {
		s.User = rest[:i]
		rest = rest[i+1:]
		if s.User == "" {
			return s, fmt.Errorf("host spec %q: empty user name", spec)
		}
		if strings.ContainsAny(s.User, "@/:#?%[]") || strings.IndexFunc(s.User, unicode.IsControl) >= 0 {
			return s, fmt.Errorf("host spec %q: bad user name %q", spec, s.User)
		}
	}
	host, port, err := splitHostPort(rest)
	if err != nil {
		return s, fmt.Errorf("host spec %q: %w", spec, err)
	}
	s.Host, s.Port = host, port
	return s, nil
}

// splitHostPort splits "host", "host:port", "[v6]" or "[v6]:port"; a bare
// IPv6 address (more than one colon) has no port.
func splitHostPort(hp string) (string, int, error) {
	if hp == "" {
		return "", 0, fmt.Errorf("missing host name")
	}
	host, portStr := hp, ""
	switch {
	case strings.HasPrefix(hp, "["):
		end := strings.Index(hp, "]")
		if end < 0 {
			return "", 0, fmt.Errorf("missing ']' in %q", hp)
		}
		host = hp[1:end]
		after := hp[end+1:]
		if after != "" {
			if !strings.HasPrefix(after, ":") {
				return "", 0, fmt.Errorf("unexpected %q after ']'", after)
			}
			portStr = after[1:]
			if portStr == "" {
				return "", 0, fmt.Errorf("empty port")
			}
		}
		if net.ParseIP(host) == nil {
			return "", 0, fmt.Errorf("%q in brackets is not an IP address", host)
		}
	case strings.Count(hp, ":") > 1:
		if net.ParseIP(hp) == nil {
			return "", 0, fmt.Errorf("%q is not an IPv6 address (use [addr]:port)", hp)
		}
	case strings.Contains(hp, ":"):
		i := strings.LastIndex(hp, ":")
		host, portStr = hp[:i], hp[i+1:]
		if portStr == "" {
			return "", 0, fmt.Errorf("empty port")
		}
	}
	if host == "" {
		return "", 0, fmt.Errorf("missing host name")
	}
	if net.ParseIP(host) == nil && !validHostName(host) {
		return "", 0, fmt.Errorf("bad host name %q", host)
	}
	port := 0
	if portStr != "" {
		p, err := strconv.Atoi(portStr)
		if err != nil || p < 1 || p > 65535 {
			return "", 0, fmt.Errorf("bad port %q (want 1-65535)", portStr)
		}
		port = p
	}
	return host, port, nil
}

// validHostName accepts DNS names and ssh_config aliases made of letters,
// digits, '-', '_' and '.'.
func validHostName(h string) bool {
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return h != ""
}

func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}
