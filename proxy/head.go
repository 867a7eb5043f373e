package proxy

import (
	"bufio"
	"bytes"
	"net/url"
	"strconv"
)

// hopByHop reports whether a header must not be forwarded.
func hopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return equalFoldASCII(name, "te")
	case 7:
		return equalFoldASCII(name, "upgrade")
	case 10:
		return equalFoldASCII(name, "connection") || equalFoldASCII(name, "keep-alive")
	case 16:
		return equalFoldASCII(name, "proxy-connection")
	case 17:
		return equalFoldASCII(name, "transfer-encoding")
	case 19:
		return equalFoldASCII(name, "proxy-authorization")
	}
	return false
}

// clientAddressHeader reports the headers that carry the client address.
func clientAddressHeader(name []byte) int {
	switch len(name) {
	case 9:
		if equalFoldASCII(name, "forwarded") {
			return 3
		}
	case 15:
		if equalFoldASCII(name, "x-forwarded-for") {
			return 1
		}
	case 17:
		if equalFoldASCII(name, "x-forwarded-proto") {
			return 2
		}
	}
	return 0
}

func (m *msgHead) listedInConnection(name []byte) bool {
	for _, t := range m.connTokens {
		if bytes.EqualFold(m.bytes(t), name) {
			return true
		}
	}
	return false
}

// writeRequestHead writes the request line and headers for the backend.
func (cc *clientConn) writeRequestHead(w *bufio.Writer, b *backend) {
	req, l := &cc.req, cc.l
	w.Write(req.bytes(req.method))
	w.WriteByte(' ')
	w.Write(req.bytes(req.target))
	w.WriteString(" HTTP/1.1\r\n")
	var xff, fwd []byte
	for _, h := range req.hdrs {
		name := req.bytes(h.name)
		if hopByHop(name) || (len(req.connTokens) > 0 && req.listedInConnection(name)) {
			continue
		}
		if k := clientAddressHeader(name); k != 0 {
			if cc.trusted {
				switch k {
				case 1:
					xff = req.bytes(h.value)
				case 3:
					fwd = req.bytes(h.value)
				}
			}
			continue
		}
		if l.dropHeader(req, h, &cc.scratch) {
			continue
		}
		value := req.bytes(h.value)
		if l.cfg.RewriteDestination && equalFoldASCII(name, "destination") {
			value = rewriteDestination(value, b)
		}
		w.Write(name)
		w.WriteString(": ")
		w.Write(value)
		w.WriteString("\r\n")
	}
	if req.host.e == 0 {
		// An HTTP/1.0 client may omit Host; HTTP/1.1 backends require it.
		w.WriteString("Host: ")
		w.WriteString(b.addr)
		w.WriteString("\r\n")
	}
	w.Write(l.extraHeaders)
	cc.writeClientAddress(w, xff, fwd)
	if req.connUpgrade && req.upgrade.e > req.upgrade.s {
		w.WriteString("Connection: Upgrade\r\nUpgrade: ")
		w.Write(req.bytes(req.upgrade))
		w.WriteString("\r\n")
	}
	if req.chunked {
		w.WriteString("Transfer-Encoding: chunked\r\n")
	}
	w.WriteString("\r\n")
}

// writeClientAddress adds X-Forwarded-For, X-Forwarded-Proto and
// Forwarded, appending to a trusted peer's values (xff, fwd).
func (cc *clientConn) writeClientAddress(w *bufio.Writer, xff, fwd []byte) {
	scheme := cc.l.scheme
	w.WriteString("X-Forwarded-For: ")
	if len(xff) > 0 {
		w.Write(xff)
		w.WriteString(", ")
	}
	w.WriteString(cc.addrStr)
	w.WriteString("\r\nX-Forwarded-Proto: ")
	w.WriteString(scheme)
	w.WriteString("\r\nForwarded: ")
	if len(fwd) > 0 {
		w.Write(fwd)
		w.WriteString(", ")
	}
	w.WriteString("for=")
	if cc.addr.Is6() {
		w.WriteString("\"[" + cc.addrStr + "]\"")
	} else {
		w.WriteString(cc.addrStr)
	}
	w.WriteString(";proto=")
	w.WriteString(scheme)
	w.WriteString("\r\n")
}

// dropHeader applies HeadRemove and SetHeader to one request header.
func (l *httpListener) dropHeader(req *msgHead, h hdr, scratch *[]byte) bool {
	if len(l.setNames) == 0 && len(l.cfg.HeadRemove) == 0 {
		return false
	}
	name := req.bytes(h.name)
	for _, n := range l.setNames {
		if bytes.EqualFold(name, n) {
			return true
		}
	}
	if len(l.cfg.HeadRemove) == 0 {
		return false
	}
	b := append((*scratch)[:0], name...)
	b = append(b, ':', ' ')
	b = append(b, req.bytes(h.value)...)
	*scratch = b
	for _, re := range l.cfg.HeadRemove {
		if re.Match(b) {
			return true
		}
	}
	return false
}

func rewriteDestination(v []byte, b *backend) []byte {
	u, err := url.Parse(string(v))
	if err != nil || u.Host == "" || b.network != "tcp" {
		return v
	}
	u.Host = b.addr
	u.Scheme = "http"
	if b.tlsConf != nil {
		u.Scheme = "https"
	}
	return []byte(u.String())
}

// writeInterim relays a 1xx response head to the client.
func (cc *clientConn) writeInterim() {
	resp, w := &cc.resp, cc.ep.bw
	w.WriteString("HTTP/1.1 ")
	w.WriteString(strconv.Itoa(resp.status))
	w.WriteByte(' ')
	w.Write(resp.bytes(resp.reason))
	w.WriteString("\r\n")
	for _, h := range resp.hdrs {
		if hopByHop(resp.bytes(h.name)) {
			continue
		}
		w.Write(resp.bytes(h.name))
		w.WriteString(": ")
		w.Write(resp.bytes(h.value))
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
}

// writeResponseHead writes the backend's status line and headers to the
// client, with the framing and connection headers the proxy decided on.
func (cc *clientConn) writeResponseHead(b *backend, svc *service, skey string, keep, chunked bool) {
	req, resp, w := &cc.req, &cc.resp, cc.ep.bw
	w.WriteString("HTTP/1.1 ")
	w.WriteString(strconv.Itoa(resp.status))
	w.WriteByte(' ')
	w.Write(resp.bytes(resp.reason))
	w.WriteString("\r\n")
	for _, h := range resp.hdrs {
		name := resp.bytes(h.name)
		if hopByHop(name) || (len(resp.connTokens) > 0 && resp.listedInConnection(name)) {
			continue
		}
		if resp.chunked && equalFoldASCII(name, "content-length") {
			continue // chunked framing wins; never pass both on
		}
		value := resp.bytes(h.value)
		if cc.l.cfg.RewriteLocation > 0 && (equalFoldASCII(name, "location") || equalFoldASCII(name, "content-location")) {
			value = cc.rewriteLocation(value, b)
		}
		w.Write(name)
		w.WriteString(": ")
		w.Write(value)
		w.WriteString("\r\n")
	}
	switch {
	case resp.status == 101:
		w.WriteString("Connection: Upgrade\r\nUpgrade: ")
		w.Write(resp.bytes(resp.upgrade))
		w.WriteString("\r\n")
	case !keep:
		w.WriteString("Connection: close\r\n")
	case req.minor == 0:
		w.WriteString("Connection: keep-alive\r\n")
	}
	if chunked {
		w.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if svc.sess != nil && svc.sess.cfg.Type == "ID" && skey != b.key {
		w.WriteString("Set-Cookie: ")
		w.WriteString(svc.sess.idCookie(b))
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
}

// rewriteLocation points a redirect that names the backend (or this
// listener with the wrong scheme) back at the address the client used.
func (cc *clientConn) rewriteLocation(v []byte, b *backend) []byte {
	u, err := url.Parse(string(v))
	if err != nil || u.Host == "" {
		return v
	}
	host := string(cc.req.bytes(cc.req.host))
	switch {
	case b.network == "tcp" && (u.Host == b.addr || (u.Port() == "" && u.Hostname() == b.cfg.Address && (b.cfg.Port == 80 || b.cfg.Port == 443))):
	case cc.l.cfg.RewriteLocation == 1 && u.Host == host && u.Scheme != cc.l.scheme:
	default:
		return v
	}
	u.Scheme = cc.l.scheme
	u.Host = host
	return []byte(u.String())
}
