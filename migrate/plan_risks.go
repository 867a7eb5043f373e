package migrate

import (
	"fmt"
	"strings"
	"time"
)

// MaxWaitTTL is the longest TTL the plan accepts waiting out after a
// switch without raising a risk.
const MaxWaitTTL = 300 * time.Second

// diskMargin is how much more than the bytes to move the target must have
// free.
const diskMargin = 1.2

// Risks applies every risk rule to the findings in p.
func Risks(p *Plan) []Risk {
	var rs []Risk
	for _, rule := range []func(*Plan) []Risk{riskProxyAddress, riskIPRules, riskDNS, riskDisk, riskPlatform, riskPortBusy} {
		rs = append(rs, rule(p)...)
	}
	return rs
}

// riskProxyAddress: once the proxy on the old address forwards to the new
// host, the new service sees the proxy's address as the client's unless it
// reads the PROXY protocol or X-Forwarded-For.
func riskProxyAddress(p *Plan) []Risk {
	c := p.Config
	if c == nil || c.Kind == "" || c.Kind == "bind" {
		return nil
	}
	if len(c.RealIP) > 0 || len(c.ProxyProtocol) > 0 {
		return nil
	}
	r := Risk{ID: RiskProxyAddress, Severity: "medium",
		Title: "the new host will log the proxy's address, not the client's, for traffic still arriving at the old address"}
	proxyAddr := p.Hosts.Old.Spec
	if p.OldAddr != "" {
		proxyAddr = p.OldAddr
	}
	switch c.Kind {
	case "nginx":
		xff := "no log_format records $http_x_forwarded_for"
		if len(c.ForwardedForLog) > 0 {
			xff = "a log_format records X-Forwarded-For (" + c.ForwardedForLog[0] + ") but $remote_addr will still be the proxy"
		}
		r.Detail = "nginx on the new host has no set_real_ip_from/real_ip_header, and " + xff + "; rules using $remote_addr (allow/deny, geo, limit_req) will see the proxy"
		r.Fix = fmt.Sprintf("in the http{} block of the new host's nginx.conf add:\n"+
			"    set_real_ip_from %s;   # the old host, where the migrate proxy runs\n"+
			"    real_ip_header X-Forwarded-For;\n"+
			"    real_ip_recursive on;\n"+
			"and log the original address too:\n"+
			"    log_format migrate '$remote_addr via $realip_remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" \"$http_user_agent\"';\n"+
			"    access_log /var/log/nginx/access.log migrate;\n"+
			"(or listen ... proxy_protocol; with real_ip_header proxy_protocol; when the proxy sends the PROXY protocol)", hostOnly(proxyAddr))
	case "apache":
		r.Detail = "Apache on the new host has no mod_remoteip configuration (RemoteIPHeader)"
		r.Fix = fmt.Sprintf("a2enmod remoteip, then add to the server config:\n"+
			"    RemoteIPHeader X-Forwarded-For\n"+
			"    RemoteIPInternalProxy %s\n"+
			"and use %%a instead of %%h in LogFormat", hostOnly(proxyAddr))
	case "postfix":
		r.Detail = "Postfix will see every SMTP client forwarded by the proxy as the old host: mynetworks and client restrictions match the proxy"
		r.Fix = "have the proxy send the PROXY protocol and set smtpd_upstream_proxy_protocol = haproxy in the new host's main.cf (postscreen_upstream_proxy_protocol when postscreen is used); never put the old host in mynetworks, or the proxy becomes an open relay"
		r.Severity = "high"
	}
	return []Risk{r}
}

func riskIPRules(p *Plan) []Risk {
	c := p.Config
	if c == nil || len(c.AccessRules) == 0 {
		return nil
	}
	n := len(c.AccessRules)
	list := c.AccessRules
	if n > 5 {
		list = append(list[:5:5], fmt.Sprintf("... and %d more", n-5))
	}
	return []Risk{{ID: RiskIPRules, Severity: "high",
		Title:  fmt.Sprintf("%d IP-based access rule(s) will match the proxy's address while traffic is forwarded", n),
		Detail: strings.Join(list, "\n"),
		Fix:    "make the service see client addresses first (see " + RiskProxyAddress + "), or move these rules to the proxy; check none of them allows the old host's address, which would open them to everyone it forwards"}}
}

func riskDNS(p *Plan) []Risk {
	d := p.DNS
	if d == nil {
		if len(p.Domains) == 0 {
			return []Risk{{ID: RiskNoDNS, Severity: "low", Title: "no --domain given: the DNS was not checked",
				Fix: "give the names clients use with --domain (and the authoritative servers with --dns-server) so the plan can time the switch"}}
		}
		return nil
	}
	var rs []Risk
	if d.Error != "" {
		return []Risk{{ID: RiskNoDNS, Severity: "high", Title: "the DNS could not be checked", Detail: d.Error,
			Fix: "check --dns-server and the names; `migrate dns check` shows what each server answers"}}
	}
	if !d.Consistent {
		rs = append(rs, Risk{ID: RiskDNSMismatch, Severity: "high", Title: "the authoritative servers disagree",
			Detail: strings.Join(d.Problems, "\n"),
			Fix:    "fix zone transfers (serials, NOTIFY, allow-transfer) before the cutover: a switch would reach only some servers"})
	}
	answering := 0
	for _, s := range d.Servers {
		if s.Error == "" || s.Serial != 0 {
			answering++
		}
	}
	if answering < 2 {
		rs = append(rs, Risk{ID: RiskSingleNS, Severity: "medium", Title: fmt.Sprintf("only %d authoritative server answers for %s", answering, strings.TrimSuffix(d.Zone, ".")),
			Fix: "add a secondary DNS server on another network (an ISP's secondary service, or a peer's) before moving anything: if this one is down during the move, the names stop resolving"})
	}
	if mx, backup := d.MXHosts(); len(mx) > 0 && !backup {
		rs = append(rs, Risk{ID: RiskSingleMX, Severity: "medium", Title: "mail has no backup MX",
			Detail: "MX: " + strings.Join(mx, ", "),
			Fix:    "add a second MX with a higher preference (e.g. MX 20 mail2) on a host that relays for the domain, and test it with an SMTP RCPT TO for an address of the domain before the cutover"})
	}
	for _, m := range d.MXProbes {
		if !m.Backup || m.Result == "accepts" {
			continue
		}
		sev, title := "high", fmt.Sprintf("backup MX %s refuses mail for %s", m.Host, m.Rcpt)
		if m.Result != "refuses" {
			sev, title = "medium", fmt.Sprintf("backup MX %s could not be tested (%s)", m.Host, m.Result)
		}
		rs = append(rs, Risk{ID: RiskBackupMX, Severity: sev, Title: title,
			Detail: fmt.Sprintf("RCPT TO:<%s> at %s: %s", m.Rcpt, m.Addr, m.Reply),
			Fix:    "make the backup MX relay for the domain (Postfix: relay_domains = DOMAIN and an empty or permissive relay_recipient_maps on the backup), then plan again: while the mail server moves, mail waits there"})
	}
	if d.MaxTTL > MaxWaitTTL {
		rs = append(rs, Risk{ID: RiskLongTTL, Severity: "medium",
			Title:  fmt.Sprintf("TTL %s: caches may use the old address that long after the switch", d.MaxTTL),
			Detail: fmt.Sprintf("lowering the TTL now takes effect everywhere at %s", d.CutoverAfter.UTC().Format(time.RFC3339)),
			Fix: fmt.Sprintf("lower it now: `migrate dns lower-ttl %s --ttl %d` (for each name), and cut over after %s",
				firstOr(p.Domains, "NAME"), int(d.LowTTL/time.Second), d.CutoverAfter.UTC().Format(time.RFC3339))})
	}
	return rs
}

func riskDisk(p *Plan) []Risk {
	m, n := p.Move, p.Hosts.New
	if m == nil || !m.Measured || n.Error != "" || n.DiskPath == "" {
		return nil
	}
	need := uint64(float64(m.BytesToSend) * diskMargin)
	if n.DiskAvail >= need {
		return nil
	}
	return []Risk{{ID: RiskDisk, Severity: "high",
		Title:  "not enough disk on the target",
		Detail: fmt.Sprintf("%s free on %s, %s needed (what will move plus 20%%)", Bytes(int64(n.DiskAvail)), n.DiskPath, Bytes(int64(need))),
		Fix:    fmt.Sprintf("free or add %s on %s of the new host before `migrate transfer`", Bytes(int64(need-n.DiskAvail)), n.DiskPath)}}
}

func riskPlatform(p *Plan) []Risk {
	o, n := p.Hosts.Old, p.Hosts.New
	if o.Error != "" || n.Error != "" {
		return nil
	}
	var rs []Risk
	if o.Arch != "" && n.Arch != "" && o.Arch != n.Arch {
		rs = append(rs, Risk{ID: RiskArch, Severity: "high", Title: fmt.Sprintf("different architecture: %s → %s", o.Arch, n.Arch),
			Detail: "the captured binaries and libraries will not run on the new host",
			Fix:    "install the service from the target's packages and move only its config and data (`migrate capture --exclude` the binaries), or pick a target of the same architecture"})
	}
	if o.OS != "" && n.OS != "" && o.OS != n.OS {
		rs = append(rs, Risk{ID: RiskOS, Severity: "low", Title: fmt.Sprintf("different OS: %s → %s", o.OS, n.OS),
			Detail: "the service runs in a chroot with its own libraries, so this usually works; the kernel interfaces it uses must exist on the new host",
			Fix:    "test the new service before the cutover (`migrate cutover` runs a health check first)"})
	}
	return rs
}

// riskPortBusy: something already listens on the service's port on the
// target, so the migrated service could not bind it.
func riskPortBusy(p *Plan) []Risk {
	if len(p.Hosts.New.Listening) == 0 {
		return nil
	}
	return []Risk{{ID: RiskPortBusy, Severity: "high", Title: "the service's port is in use on the target",
		Detail: strings.Join(p.Hosts.New.Listening, "\n"),
		Fix:    "stop what listens there on the new host (or move it), else the migrated service cannot start"}}
}

func hostOnly(spec string) string {
	s := spec
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		s = s[i+1:]
	}
	if strings.HasPrefix(s, "[") {
		if j := strings.Index(s, "]"); j > 0 {
			return s[1:j]
		}
	}
	if i := strings.LastIndex(s, ":"); i >= 0 && strings.Count(s, ":") == 1 {
		s = s[:i]
	}
	return s
}

// Bytes formats n with a binary unit.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func firstOr(s []string, def string) string {
	if len(s) > 0 {
		return s[0]
	}
	return def
}
