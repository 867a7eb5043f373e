package proxy

import (
	"crypto/tls"
	"net/netip"
	"regexp"
	"time"
)

// Config is a parsed Pound configuration (plus migrate's extensions).
type Config struct {
	File        string
	User        string
	Group       string
	RootJail    string
	Daemon      bool
	LogLevel    int    // 0-5, Pound's numbering
	LogFormat   string // "null", "regular", "extended", "vhost_combined", "combined", "detailed"
	LogFacility string
	Alive       time.Duration
	TimeOut     time.Duration
	ConnTO      time.Duration
	Client      time.Duration
	Grace       time.Duration
	Control     string
	PIDFile     string
	Metrics     string // listen address for Prometheus metrics (extension)
	AccessLog   string // file for the access log (extension); "" = syslog/stderr
	Trusted     []netip.Prefix

	Listeners []*ListenerConfig
	Services  []*ServiceConfig // global services, tried after a listener's own

	Warnings []Diag
}

// Listener kinds.
const (
	KindHTTP  = "http"
	KindHTTPS = "https"
	KindTCP   = "tcp"
	KindUDP   = "udp"
)

// ListenerConfig is one ListenHTTP, ListenHTTPS, ListenTCP or ListenUDP block.
type ListenerConfig struct {
	Pos        Pos
	Name       string
	Kind       string
	Address    string
	Port       int
	XHTTP      int
	Certs      []tls.Certificate
	CertFiles  []string
	Ciphers    string
	MinTLS     uint16
	MaxRequest int64
	// RewriteLocation: 0 off, 1 rewrite Location pointing at a backend or
	// at this listener with the wrong scheme, 2 like 1 but backends only.
	RewriteLocation    int
	RewriteDestination bool
	AddHeaders         []string // "Name: value" lines appended to requests
	SetHeaders         []string // replace a header of the same name
	HeadRemove         []*regexp.Regexp
	ErrorFiles         map[int][]byte
	Client             time.Duration
	TimeOut            time.Duration
	LogLevel           int
	Trusted            []netip.Prefix
	Services           []*ServiceConfig
}

// ServiceConfig is one Service block.
type ServiceConfig struct {
	Pos       Pos
	Name      string
	Cond      []Cond // all must match
	Backends  []*BackendConfig
	Emergency []*BackendConfig
	Balancer  string // "random" (default) or "iwrr"
	Session   *SessionConfig
	Disabled  bool
}

// BackendConfig is one BackEnd or Emergency block.
type BackendConfig struct {
	Pos           Pos
	Address       string // IP, host name, or Unix socket path
	Port          int
	TimeOut       time.Duration
	ConnTO        time.Duration
	Weight        int
	HTTPS         bool
	ServerName    string
	Disabled      bool
	ProxyProtocol int // 0 off, 1 or 2: PROXY protocol version sent to the backend
	Emergency     bool
	HAPort        int    // port for the active health check (0: Port)
	Redirect      string // Pound's Redirect pseudo-backend: send clients to this URL
	RedirectCode  int    // 301, 302 (default) or 307
}

// Unix reports whether the backend address is a Unix socket path.
func (b *BackendConfig) Unix() bool { return len(b.Address) > 0 && b.Address[0] == '/' }

// SessionConfig is a Service's Session block.
type SessionConfig struct {
	Type string // IP, BASIC, URL, PARM, COOKIE, HEADER, ID
	TTL  time.Duration
	ID   string // cookie, header or parameter name
}

// Cond is one request condition of a Service.
type Cond struct {
	Kind  string // "header", "host", "url", "path", "not", "and", "or"
	Re    *regexp.Regexp
	Exact string // for -exact host matches (lower case)
	Sub   []Cond
}
