package testbed

import (
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"
)

// NginxOptions describe an nginx started by StartNginx.
type NginxOptions struct {
	// Port to listen on, on all addresses of the host (default 80).
	Port int
	// Docroot inside the host (default /srv/www). It is created if
	// missing, with an index.html naming the host when Index is empty.
	Docroot string
	// Index, if set, is written to Docroot/index.html.
	Index string
	// System runs Debian's own /etc/nginx/nginx.conf (sites-enabled/default
	// on port 80, docroot /var/www/html) instead of a generated config;
	// Port, Docroot and Index are ignored then.
	System bool
	// Config, if set, is the complete nginx.conf to run.
	Config string
}

// nginxConfig is the generated config: one server, logs in the host's
// private /var/log, pid in its private /run.
const nginxConfig = `worker_processes 1;
pid /run/nginx.pid;
error_log stderr notice;
events { worker_connections 256; }
http {
	include /etc/nginx/mime.types;
	default_type application/octet-stream;
	access_log /var/log/nginx/access.log;
	server {
		listen %d;
		root %s;
	}
}
`

// StartNginx runs nginx in the foreground inside the host and waits until
// it answers HTTP on its port from the root namespace. It is stopped like
// any Start process.
func (n *Node) StartNginx(t TB, o NginxOptions) *Proc {
	t.Helper()
	RequireTools(t, "nginx")
	if o.Port == 0 || o.System {
		o.Port = 80
	}
	if o.Docroot == "" {
		o.Docroot = "/srv/www"
	}
	argv := []string{"nginx", "-e", "stderr", "-g", "daemon off;"}
	switch {
	case o.System:
	case o.Config != "":
		conf := filepath.Join(n.Dir, "nginx.conf")
		writeFile(t, conf, o.Config)
		argv = append(argv, "-c", conf)
	default:
		if _, err := n.Stat(o.Docroot); err != nil || o.Index != "" {
			index := o.Index
			if index == "" {
				index = "hello from " + n.Hostname + "\n"
			}
			n.WriteFile(t, filepath.Join(o.Docroot, "index.html"), []byte(index), 0o644)
		}
		conf := filepath.Join(n.Dir, "nginx.conf")
		writeFile(t, conf, fmt.Sprintf(nginxConfig, o.Port, o.Docroot))
		argv = append(argv, "-c", conf)
	}
	p := n.Start(t, "nginx", argv...)
	url := fmt.Sprintf("http://%s/", net.JoinHostPort(n.Addr, strconv.Itoa(o.Port)))
	if err := WaitHTTP(url, 10*time.Second, p); err != nil {
		t.Fatalf("testbed: nginx on %s: %v", n.Name, err)
	}
	return p
}

// WaitHTTP polls url until any HTTP response arrives (a 404 counts: the
// server is up), timeout passes or p (if not nil) exits.
func WaitHTTP(url string, timeout time.Duration, p *Proc) error {
	client := &http.Client{Timeout: time.Second}
	return poll(timeout, p, func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
}

// WaitTCP polls addr ("host:port") until a TCP connection succeeds.
func WaitTCP(addr string, timeout time.Duration, p *Proc) error {
	return poll(timeout, p, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// WaitFor polls cond until it returns nil or timeout passes, then fails
// the test with the last error, naming what was awaited.
func WaitFor(t TB, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	if err := poll(timeout, nil, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}
