package proxy

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// service is a Service at run time.
type service struct {
	cfg       *ServiceConfig
	name      string
	backends  []*backend
	emergency []*backend
	iwrr      []int // schedule of indices into backends
	byKey     map[string]*backend
	next      atomic.Uint64
	sess      *sessionTable
	m         *serviceMetrics
}

// all returns normal then emergency backends.
func (s *service) all() []*backend {
	out := make([]*backend, 0, len(s.backends)+len(s.emergency))
	return append(append(out, s.backends...), s.emergency...)
}

// iwrrSchedule builds the interleaved weighted round-robin order: in
// round r every backend with weight ≥ r gets one turn.
func iwrrSchedule(bs []*backend) []int {
	maxW := 0
	for _, b := range bs {
		maxW = max(maxW, b.cfg.Weight)
	}
	var out []int
	for r := 1; r <= maxW; r++ {
		for i, b := range bs {
			if b.cfg.Weight >= r {
				out = append(out, i)
			}
		}
	}
	return out
}

// matches reports whether req satisfies every condition of the service.
func (s *service) matches(req *msgHead, scratch *[]byte) bool {
	if s.cfg.Disabled {
		return false
	}
	for i := range s.cfg.Cond {
		if !evalCond(&s.cfg.Cond[i], req, scratch) {
			return false
		}
	}
	return true
}

func evalCond(c *Cond, req *msgHead, scratch *[]byte) bool {
	switch c.Kind {
	case "not":
		return !evalCond(&c.Sub[0], req, scratch)
	case "and":
		for i := range c.Sub {
			if !evalCond(&c.Sub[i], req, scratch) {
				return false
			}
		}
		return true
	case "or":
		for i := range c.Sub {
			if evalCond(&c.Sub[i], req, scratch) {
				return true
			}
		}
		return false
	case "host":
		h := hostOnly(req.bytes(req.host))
		if c.Exact != "" {
			return equalFoldASCII(h, c.Exact)
		}
		return c.Re.Match(h)
	case "url":
		return c.Re.Match(req.bytes(req.target))
	case "path":
		return c.Re.Match(pathOf(req.bytes(req.target)))
	case "header":
		for _, h := range req.hdrs {
			b := append((*scratch)[:0], req.bytes(h.name)...)
			b = append(b, ':', ' ')
			b = append(b, req.bytes(h.value)...)
			*scratch = b
			if c.Re.Match(b) {
				return true
			}
		}
		return false
	}
	return false
}

// hostOnly strips a port from a Host header value.
func hostOnly(h []byte) []byte {
	if len(h) > 0 && h[0] == '[' {
		if i := bytes.IndexByte(h, ']'); i > 0 {
			return h[1:i]
		}
		return h
	}
	if i := bytes.LastIndexByte(h, ':'); i >= 0 {
		return h[:i]
	}
	return h
}

// pathOf returns the path of a request target (origin or absolute form).
func pathOf(t []byte) []byte {
	if len(t) > 0 && t[0] != '/' {
		if i := bytes.Index(t, []byte("://")); i >= 0 {
			t = t[i+3:]
			if j := bytes.IndexByte(t, '/'); j >= 0 {
				t = t[j:]
			} else {
				return []byte("/")
			}
		}
	}
	if i := bytes.IndexAny(t, "?#"); i >= 0 {
		t = t[:i]
	}
	return t
}

// pick chooses a backend for req, skipping those in tried (a bit set of
// backend ids). Emergency backends serve only when no normal one is usable.
func (s *service) pick(req *msgHead, client netip.Addr, tried uint64) (*backend, string) {
	var key string
	if s.sess != nil {
		key = s.sess.key(req, client)
		if key != "" {
			var b *backend
			if s.sess.cfg.Type == "ID" {
				b = s.byKey[key]
			} else {
				b = s.sess.lookup(key)
			}
			// A session on an Emergency backend ends once a normal one is back.
			if b != nil && b.usable() && tried&(1<<uint(b.id%64)) == 0 && !(b.cfg.Emergency && s.normalUsable()) {
				return b, key
			}
		}
	}
	b := s.choose(s.backends, tried)
	if b == nil {
		b = s.choose(s.emergency, tried)
	}
	if b != nil && key != "" && s.sess.learnOnRequest() {
		s.sess.store(key, b)
	}
	return b, key
}

func (s *service) normalUsable() bool {
	for _, b := range s.backends {
		if b.usable() {
			return true
		}
	}
	return false
}

func (s *service) choose(bs []*backend, tried uint64) *backend {
	ok := func(b *backend) bool { return b.usable() && tried&(1<<uint(b.id%64)) == 0 }
	switch len(bs) {
	case 0:
		return nil
	case 1:
		if ok(bs[0]) {
			return bs[0]
		}
		return nil
	}
	if s.cfg.Balancer == "iwrr" && len(bs) == len(s.backends) && len(s.iwrr) > 0 {
		for range len(s.iwrr) {
			i := s.iwrr[(s.next.Add(1)-1)%uint64(len(s.iwrr))]
			if ok(bs[i]) {
				return bs[i]
			}
		}
	}
	total := 0
	for _, b := range bs {
		if ok(b) {
			total += max(b.cfg.Weight, 0)
		}
	}
	if total == 0 {
		for _, b := range bs {
			if ok(b) {
				return b
			}
		}
		return nil
	}
	r := rand.IntN(total)
	for _, b := range bs {
		if ok(b) {
			if r -= max(b.cfg.Weight, 0); r < 0 {
				return b
			}
		}
	}
	return nil
}

// sessionTable maps session keys to backends for a TTL after last use.
type sessionTable struct {
	cfg *SessionConfig
	mu  sync.Mutex
	m   map[string]sessEntry
}

type sessEntry struct {
	b       *backend
	expires time.Time
}

func newSessionTable(cfg *SessionConfig) *sessionTable {
	return &sessionTable{cfg: cfg, m: map[string]sessEntry{}}
}

// learnOnRequest is false for ID sessions, which live in the client's cookie.
func (t *sessionTable) learnOnRequest() bool {
	return t.cfg.Type != "ID"
}

func (t *sessionTable) lookup(key string) *backend {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[key]
	if !ok {
		return nil
	}
	if now.After(e.expires) {
		delete(t.m, key)
		return nil
	}
	e.expires = now.Add(t.cfg.TTL)
	t.m[key] = e
	return e.b
}

func (t *sessionTable) store(key string, b *backend) {
	t.mu.Lock()
	if len(t.m) < 1<<20 {
		t.m[key] = sessEntry{b, time.Now().Add(t.cfg.TTL)}
	}
	t.mu.Unlock()
}

// expire drops sessions past their TTL.
func (t *sessionTable) expire(now time.Time) {
	t.mu.Lock()
	for k, e := range t.m {
		if now.After(e.expires) {
			delete(t.m, k)
		}
	}
	t.mu.Unlock()
}

func (t *sessionTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}
