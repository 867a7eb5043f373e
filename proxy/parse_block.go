package proxy

import (
	"crypto/tls"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

var listenerKeywords = []string{"Address", "Port", "xHTTP", "Cert", "Ciphers", "MaxRequest", "RewriteLocation",
	"RewriteDestination", "AddHeader", "SetHeader", "HeadRemove", "Err400", "Err404", "Err413", "Err414",
	"Err500", "Err501", "Err503", "ErrorFile", "Client", "TimeOut", "LogLevel", "Service", "BackEnd",
	"Emergency", "Disable", "TrustedProxy", "End"}

func (p *parser) listener(open line, kind string) *ListenerConfig {
	p.noArgs(open)
	lc := &ListenerConfig{Pos: open.pos(), Name: open.Toks[0].Text, Kind: kind, LogLevel: -1, ErrorFiles: map[int][]byte{}}
	var tcpSvc *ServiceConfig // ListenTCP/ListenUDP carry backends directly
	for {
		l, ok := p.next()
		if !ok {
			p.blockEOF(open)
			break
		}
		k := kw(l)
		if k == "end" {
			p.noArgs(l)
			break
		}
		if kind == KindTCP || kind == KindUDP {
			if k == "backend" || k == "emergency" || k == "balancer" {
				if tcpSvc == nil {
					tcpSvc = &ServiceConfig{Pos: l.pos(), Name: "(" + kind + ")", Balancer: "random"}
					lc.Services = append(lc.Services, tcpSvc)
				}
				p.serviceLine(tcpSvc, l)
				continue
			}
		}
		p.listenerLine(lc, l)
	}
	if lc.Port == 0 && !p.hasDiagAfter(open.pos()) {
		p.errf(open.pos(), "%s has no Port", open.Toks[0].Text)
	}
	if kind == KindHTTPS && len(lc.Certs) == 0 && !p.hasDiagAfter(open.pos()) {
		p.errf(open.pos(), "ListenHTTPS has no Cert")
	}
	if (kind == KindTCP || kind == KindUDP) && (tcpSvc == nil || len(tcpSvc.Backends)+len(tcpSvc.Emergency) == 0) {
		p.errf(open.pos(), "%s has no BackEnd", open.Toks[0].Text)
	}
	return lc
}

// hasDiagAfter reports whether an error was already recorded inside the
// block opened at pos (to avoid piling a second error onto a bad Cert).
func (p *parser) hasDiagAfter(pos Pos) bool {
	for _, d := range p.diags {
		if d.Pos.File == pos.File && d.Pos.Line > pos.Line {
			return true
		}
	}
	return false
}

func (p *parser) listenerLine(lc *ListenerConfig, l line) {
	switch k := kw(l); k {
	case "address":
		lc.Address, _ = p.str(l)
	case "port":
		lc.Port, _ = p.num(l, 1, 65535)
	case "xhttp":
		lc.XHTTP, _ = p.num(l, 0, 3)
	case "cert":
		if lc.Kind != KindHTTPS {
			p.errf(l.pos(), "Cert is only allowed in ListenHTTPS")
			return
		}
		if p.nargs(l, 1) {
			p.loadCert(l.Toks[1], lc)
		}
	case "ciphers":
		lc.Ciphers, _ = p.str(l)
		p.warnf(l.pos(), "Ciphers is accepted but Go's crypto/tls chooses the cipher suites (no SSLv2/RC4/NULL)")
	case "disable":
		if s, ok := p.str(l); ok {
			switch strings.ToUpper(s) {
			case "SSLV2", "SSLV3":
				lc.MinTLS = max(lc.MinTLS, tls.VersionTLS10)
			case "TLSV1":
				lc.MinTLS = max(lc.MinTLS, tls.VersionTLS11)
			case "TLSV1_1":
				lc.MinTLS = max(lc.MinTLS, tls.VersionTLS12)
			case "TLSV1_2":
				lc.MinTLS = max(lc.MinTLS, tls.VersionTLS13)
			default:
				p.errf(l.Toks[1].Pos, "Disable: unknown protocol %q", s)
			}
		}
	case "maxrequest":
		n, _ := p.num(l, 0, 1<<62)
		lc.MaxRequest = int64(n)
	case "rewritelocation":
		lc.RewriteLocation, _ = p.num(l, 0, 2)
	case "rewritedestination":
		lc.RewriteDestination, _ = p.boolean(l)
	case "addheader", "headeradd":
		if s, ok := p.headerLine(l); ok {
			lc.AddHeaders = append(lc.AddHeaders, s)
		}
	case "setheader":
		if s, ok := p.headerLine(l); ok {
			lc.SetHeaders = append(lc.SetHeaders, s)
		}
	case "headremove", "headerremove":
		if s, ok := p.str(l); ok {
			if re := compileRe(p, l.Toks[1], "(?i)"+s); re != nil {
				lc.HeadRemove = append(lc.HeadRemove, re)
			}
		}
	case "err400", "err404", "err413", "err414", "err500", "err501", "err503":
		code, _ := strconv.Atoi(k[3:])
		if p.nargs(l, 1) {
			p.errorFile(lc, code, l.Toks[1])
		}
	case "errorfile":
		if p.nargs(l, 2) {
			code, err := strconv.Atoi(l.Toks[1].Text)
			if err != nil || http.StatusText(code) == "" || code < 400 {
				p.errf(l.Toks[1].Pos, "ErrorFile: %q is not an HTTP error status", l.Toks[1].Text)
				return
			}
			p.errorFile(lc, code, l.Toks[2])
		}
	case "client":
		lc.Client, _ = p.secs(l)
	case "timeout":
		lc.TimeOut, _ = p.secs(l)
	case "loglevel":
		lc.LogLevel, _ = p.logLevel(l)
	case "trustedproxy":
		lc.Trusted = append(lc.Trusted, p.prefixes(l)...)
	case "service":
		if lc.Kind == KindTCP || lc.Kind == KindUDP {
			p.errf(l.pos(), "Service is not allowed in %s (put BackEnd directly in it)", lc.Name)
			p.skipBlock()
			return
		}
		lc.Services = append(lc.Services, p.service(l))
	case "checkurl", "noHTTPS11", "clientcert", "calist", "verifylist", "crlist", "https11", "nohttps11":
		p.warnf(l.pos(), "%s is ignored", l.Toks[0].Text)
	default:
		p.unknown(l, listenerKeywords)
	}
}

func (p *parser) headerLine(l line) (string, bool) {
	s, ok := p.str(l)
	if !ok {
		return "", false
	}
	name, _, found := strings.Cut(s, ":")
	if !found || name == "" || strings.ContainsAny(name, " \t\r\n") || strings.ContainsAny(s, "\r\n") {
		p.errf(l.Toks[1].Pos, "%s: %q is not a \"Name: value\" header line", l.Toks[0].Text, s)
		return "", false
	}
	return s, true
}

func (p *parser) errorFile(lc *ListenerConfig, code int, t token) {
	b, err := readSmallFile(t.Text)
	if err != nil {
		p.errf(t.Pos, "error file: %v", unwrapPath(err))
		return
	}
	lc.ErrorFiles[code] = b
}

var serviceKeywords = []string{"BackEnd", "Emergency", "Session", "Redirect", "HeadRequire", "HeadDeny", "Header", "Host",
	"URL", "Path", "Not", "Match", "Balancer", "Disabled", "IgnoreCase", "End"}

func (p *parser) service(open line) *ServiceConfig {
	s := &ServiceConfig{Pos: open.pos(), Balancer: "random"}
	if len(open.Toks) == 2 {
		s.Name = open.Toks[1].Text
	} else if len(open.Toks) > 2 {
		p.errf(open.Toks[2].Pos, "Service takes at most a name")
	}
	for {
		l, ok := p.next()
		if !ok {
			p.blockEOF(open)
			break
		}
		if kw(l) == "end" {
			p.noArgs(l)
			break
		}
		p.serviceLine(s, l)
	}
	if len(s.Backends)+len(s.Emergency) == 0 {
		p.errf(open.pos(), "Service has no BackEnd")
	}
	return s
}

func (p *parser) serviceLine(s *ServiceConfig, l line) {
	switch k := kw(l); k {
	case "backend":
		s.Backends = append(s.Backends, p.backend(l, false))
	case "emergency":
		s.Emergency = append(s.Emergency, p.backend(l, true))
	case "session":
		s.Session = p.session(l)
	case "redirect":
		if r := p.redirect(l); r != nil {
			s.Backends = append(s.Backends, r)
		}
	case "balancer":
		if v, ok := p.str(l); ok {
			v = strings.ToLower(v)
			if v != "random" && v != "iwrr" {
				p.errf(l.Toks[1].Pos, "Balancer: %q is not random or iwrr", l.Toks[1].Text)
			}
			s.Balancer = v
		}
	case "disabled":
		s.Disabled, _ = p.boolean(l)
	case "ignorecase":
		p.warnf(l.pos(), "IgnoreCase is deprecated: use URL -icase \"...\"")
	default:
		if c, ok := p.cond(l, l.Toks); ok {
			s.Cond = append(s.Cond, c)
		}
	}
}

// cond parses a request condition from toks (which may be a suffix of l
// after Not).
func (p *parser) cond(l line, toks []token) (Cond, bool) {
	k := strings.ToLower(toks[0].Text)
	switch k {
	case "not":
		if len(toks) < 2 {
			p.errf(toks[0].Pos, "Not expects a condition")
			return Cond{}, false
		}
		sub, ok := p.cond(l, toks[1:])
		return Cond{Kind: "not", Sub: []Cond{sub}}, ok
	case "match":
		return p.matchBlock(l, toks)
	case "headrequire":
		p.warnf(toks[0].Pos, "HeadRequire is deprecated: use Header")
		return p.pattern(toks, "header", "-re", true)
	case "headdeny":
		c, ok := p.pattern(toks, "header", "-re", true)
		return Cond{Kind: "not", Sub: []Cond{c}}, ok
	case "header":
		return p.pattern(toks, "header", "-re", true)
	case "host":
		return p.pattern(toks, "host", "-exact", true)
	case "url":
		return p.pattern(toks, "url", "-re", false)
	case "path":
		return p.pattern(toks, "path", "-re", false)
	}
	p.unknown(line{Toks: toks}, serviceKeywords)
	return Cond{}, false
}

func (p *parser) matchBlock(open line, toks []token) (Cond, bool) {
	op := "and"
	if len(toks) == 2 {
		op = strings.ToLower(toks[1].Text)
		if op != "and" && op != "or" {
			p.errf(toks[1].Pos, "Match: %q is not AND or OR", toks[1].Text)
		}
	} else if len(toks) > 2 {
		p.errf(toks[2].Pos, "Match takes one argument, AND or OR")
	}
	c := Cond{Kind: op}
	for {
		l, ok := p.next()
		if !ok {
			p.blockEOF(open)
			return c, false
		}
		if kw(l) == "end" {
			return c, true
		}
		if sub, ok := p.cond(l, l.Toks); ok {
			c.Sub = append(c.Sub, sub)
		}
	}
}

// pattern parses KEYWORD [-re|-exact|-beg|-end|-contain] [-icase|-case] "PATTERN".
func (p *parser) pattern(toks []token, kind, mode string, icase bool) (Cond, bool) {
	args := toks[1:]
	for len(args) > 1 && !args[0].Quoted && strings.HasPrefix(args[0].Text, "-") {
		switch o := strings.ToLower(args[0].Text); o {
		case "-re", "-exact", "-beg", "-end", "-contain":
			mode = o
		case "-icase":
			icase = true
		case "-case":
			icase = false
		default:
			p.errf(args[0].Pos, "%s: unknown option %q", toks[0].Text, args[0].Text)
			return Cond{}, false
		}
		args = args[1:]
	}
	if len(args) != 1 {
		p.errf(toks[0].Pos, "%s expects one pattern", toks[0].Text)
		return Cond{}, false
	}
	pat := args[0].Text
	var expr string
	switch mode {
	case "-re":
		expr = pat
	case "-exact":
		expr = "^" + regexp.QuoteMeta(pat) + "$"
	case "-beg":
		expr = "^" + regexp.QuoteMeta(pat)
	case "-end":
		expr = regexp.QuoteMeta(pat) + "$"
	case "-contain":
		expr = regexp.QuoteMeta(pat)
	}
	if icase {
		expr = "(?i)" + expr
	}
	re := compileRe(p, args[0], expr)
	if re == nil {
		return Cond{}, false
	}
	c := Cond{Kind: kind, Re: re}
	if kind == "host" && mode == "-exact" && icase {
		c.Exact = strings.ToLower(pat)
	}
	return c, true
}

var backendKeywords = []string{"Address", "Port", "TimeOut", "ConnTO", "Priority", "Weight", "HTTPS", "ServerName",
	"Disabled", "ProxyProtocol", "HAport", "End"}

// redirect parses Redirect [301|302|307] "URL", a backend that answers
// every request with a redirect.
func (p *parser) redirect(l line) *BackendConfig {
	args := l.Toks[1:]
	code := 302
	if len(args) == 2 {
		n, err := strconv.Atoi(args[0].Text)
		if err != nil || (n != 301 && n != 302 && n != 307) {
			p.errf(args[0].Pos, "Redirect: code %q is not 301, 302 or 307", args[0].Text)
			return nil
		}
		code, args = n, args[1:]
	}
	if len(args) != 1 {
		p.errf(l.pos(), "Redirect expects [CODE] \"URL\"")
		return nil
	}
	u, err := url.Parse(args[0].Text)
	if err != nil || u.Scheme == "" || u.Host == "" {
		p.errf(args[0].Pos, "Redirect: %q is not an absolute URL", args[0].Text)
		return nil
	}
	return &BackendConfig{Pos: l.pos(), Address: "redirect", Weight: 1, Redirect: args[0].Text, RedirectCode: code}
}

func (p *parser) backend(open line, emergency bool) *BackendConfig {
	p.noArgs(open)
	b := &BackendConfig{Pos: open.pos(), Weight: 1, Emergency: emergency}
	for {
		l, ok := p.next()
		if !ok {
			p.blockEOF(open)
			break
		}
		switch kw(l) {
		case "end":
			p.noArgs(l)
			if b.Address == "" {
				p.errf(open.pos(), "%s has no Address", open.Toks[0].Text)
			} else if b.Port == 0 && !b.Unix() {
				p.errf(open.pos(), "%s has no Port", open.Toks[0].Text)
			}
			return b
		case "address":
			b.Address, _ = p.str(l)
		case "port":
			b.Port, _ = p.num(l, 1, 65535)
		case "timeout":
			b.TimeOut, _ = p.secs(l)
		case "connto":
			b.ConnTO, _ = p.secs(l)
		case "priority":
			if n, ok := p.num(l, 0, 1000); ok {
				b.Weight = n
				if n <= 9 {
					p.warnf(l.pos(), "Priority is deprecated: use Weight %d", n)
				}
			}
		case "weight":
			b.Weight, _ = p.num(l, 0, 1000)
		case "https":
			if len(l.Toks) > 1 {
				p.warnf(l.Toks[1].Pos, "HTTPS with a client certificate is not supported; the certificate is ignored")
			}
			b.HTTPS = true
		case "servername":
			b.ServerName, _ = p.str(l)
		case "disabled":
			b.Disabled, _ = p.boolean(l)
		case "haport":
			b.HAPort, _ = p.num(l, 1, 65535)
		case "proxyprotocol", "sendproxy":
			b.ProxyProtocol, _ = p.num(l, 1, 2)
		default:
			p.unknown(l, backendKeywords)
		}
	}
	return b
}

var sessionTypes = map[string]bool{"IP": true, "BASIC": true, "URL": true, "PARM": true, "COOKIE": true, "HEADER": true, "ID": true}

func (p *parser) session(open line) *SessionConfig {
	p.noArgs(open)
	s := &SessionConfig{}
	for {
		l, ok := p.next()
		if !ok {
			p.blockEOF(open)
			break
		}
		switch kw(l) {
		case "end":
			if s.Type == "" {
				p.errf(open.pos(), "Session has no Type")
			} else if s.TTL == 0 {
				p.errf(open.pos(), "Session has no TTL")
			} else if s.ID == "" && (s.Type == "URL" || s.Type == "COOKIE" || s.Type == "HEADER") {
				p.errf(open.pos(), "Session Type %s needs an ID (the name to look for)", s.Type)
			}
			return s
		case "type":
			if v, ok := p.str(l); ok {
				s.Type = strings.ToUpper(v)
				if !sessionTypes[s.Type] {
					p.errf(l.Toks[1].Pos, "Session Type %q is not IP, BASIC, URL, PARM, COOKIE, HEADER or ID", v)
				}
			}
		case "ttl":
			s.TTL, _ = p.secs(l)
		case "id":
			s.ID, _ = p.str(l)
		default:
			p.unknown(l, []string{"Type", "TTL", "ID", "End"})
		}
	}
	return s
}
