package proxy

import (
	"bytes"
	"encoding/base64"
	"net/netip"
	"strconv"
)

// key extracts the session key of req, or "" when it carries none.
func (t *sessionTable) key(req *msgHead, client netip.Addr) string {
	switch t.cfg.Type {
	case "IP":
		return client.String()
	case "BASIC":
		if v, ok := req.get("authorization"); ok && len(v) > 6 && equalFoldASCII(v[:6], "basic ") {
			return string(bytes.TrimSpace(v[6:]))
		}
	case "URL":
		return queryParam(req.bytes(req.target), t.cfg.ID)
	case "PARM":
		p := pathOf(req.bytes(req.target))
		if i := bytes.LastIndexByte(p, ';'); i >= 0 {
			return string(p[i+1:])
		}
	case "COOKIE", "ID":
		return cookieValue(req, t.cookieName())
	case "HEADER":
		if v, ok := req.get(lower(t.cfg.ID)); ok {
			return string(v)
		}
	}
	return ""
}

func (t *sessionTable) cookieName() string {
	if t.cfg.Type == "ID" && t.cfg.ID == "" {
		return "MIGRATEID"
	}
	return t.cfg.ID
}

// learn records the session a backend's response opens: a Set-Cookie
// (COOKIE) or a header (HEADER) naming the session.
func (t *sessionTable) learn(resp *msgHead, b *backend) {
	switch t.cfg.Type {
	case "COOKIE":
		for _, h := range resp.hdrs {
			if !equalFoldASCII(resp.bytes(h.name), "set-cookie") {
				continue
			}
			v := resp.bytes(h.value)
			name, rest, ok := bytes.Cut(v, []byte("="))
			if ok && string(bytes.TrimSpace(name)) == t.cfg.ID {
				val, _, _ := bytes.Cut(rest, []byte(";"))
				t.store(string(bytes.TrimSpace(val)), b)
			}
		}
	case "HEADER":
		if v, ok := resp.get(lower(t.cfg.ID)); ok {
			t.store(string(v), b)
		}
	}
}

// idCookie is the Set-Cookie value that pins a client to b (Type ID).
func (t *sessionTable) idCookie(b *backend) string {
	return t.cookieName() + "=" + b.key + "; Path=/; Max-Age=" + strconv.Itoa(int(t.cfg.TTL.Seconds())) + "; HttpOnly"
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

func queryParam(target []byte, name string) string {
	i := bytes.IndexByte(target, '?')
	if i < 0 {
		return ""
	}
	for _, kv := range bytes.Split(target[i+1:], []byte("&")) {
		k, v, _ := bytes.Cut(kv, []byte("="))
		if string(k) == name {
			return string(v)
		}
	}
	return ""
}

func cookieValue(req *msgHead, name string) string {
	for _, h := range req.hdrs {
		if !equalFoldASCII(req.bytes(h.name), "cookie") {
			continue
		}
		for _, part := range bytes.Split(req.bytes(h.value), []byte(";")) {
			k, v, ok := bytes.Cut(bytes.TrimSpace(part), []byte("="))
			if ok && string(k) == name {
				return string(v)
			}
		}
	}
	return ""
}

func decodeBase64(b []byte) ([]byte, error) {
	return base64.StdEncoding.DecodeString(string(bytes.TrimSpace(b)))
}
