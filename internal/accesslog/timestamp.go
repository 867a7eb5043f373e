package accesslog

import "time"

// timeCache remembers the last decoded second, so a busy log (thousands of
// lines per second) decodes each time stamp once.
type timeCache struct {
	key [48]byte
	n   int
	t   time.Time
}

func (c *timeCache) get(k []byte) (time.Time, bool) {
	if c.n == len(k) && c.n > 0 && string(c.key[:c.n]) == string(k) {
		return c.t, true
	}
	return time.Time{}, false
}

func (c *timeCache) put(k []byte, t time.Time) {
	if len(k) > len(c.key) {
		c.n = 0
		return
	}
	c.n = copy(c.key[:], k)
	c.t = t
}

// zones caches fixed zones by offset in seconds.
type zones map[int]*time.Location

func (z zones) get(off int) *time.Location {
	if l, ok := z[off]; ok {
		return l
	}
	l := time.FixedZone("", off)
	if len(z) < 64 {
		z[off] = l
	}
	return l
}

func digits(b []byte) (int, bool) {
	n := 0
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			return 0, false
		}
		n = n*10 + int(ch-'0')
	}
	return n, len(b) > 0
}

func month(b []byte) (time.Month, bool) {
	if len(b) != 3 {
		return 0, false
	}
	switch string(b) {
	case "Jan":
		return time.January, true
	case "Feb":
		return time.February, true
	case "Mar":
		return time.March, true
	case "Apr":
		return time.April, true
	case "May":
		return time.May, true
	case "Jun":
		return time.June, true
	case "Jul":
		return time.July, true
	case "Aug":
		return time.August, true
	case "Sep":
		return time.September, true
	case "Oct":
		return time.October, true
	case "Nov":
		return time.November, true
	case "Dec":
		return time.December, true
	}
	return 0, false
}

// clock parses "HH:MM:SS".
func clock(b []byte) (h, m, s int, ok bool) {
	if len(b) != 8 || b[2] != ':' || b[5] != ':' {
		return 0, 0, 0, false
	}
	h, ok1 := digits(b[0:2])
	m, ok2 := digits(b[3:5])
	s, ok3 := digits(b[6:8])
	if !ok1 || !ok2 || !ok3 || h > 23 || m > 59 || s > 60 {
		return 0, 0, 0, false
	}
	return h, m, s, true
}

// dmyClock parses "10/Oct/2000:13:55:36" (20 bytes) in loc.
func dmyClock(b []byte, loc *time.Location) (time.Time, bool) {
	if len(b) != 20 || b[2] != '/' || b[6] != '/' || b[11] != ':' {
		return time.Time{}, false
	}
	d, ok1 := digits(b[0:2])
	mo, ok2 := month(b[3:6])
	y, ok3 := digits(b[7:11])
	h, mi, s, ok4 := clock(b[12:20])
	if !ok1 || !ok2 || !ok3 || !ok4 || d < 1 || d > 31 {
		return time.Time{}, false
	}
	return time.Date(y, mo, d, h, mi, s, 0, loc), true
}

// zoneOffset parses "+0200", "-07:00" or "Z" into seconds east of UTC.
func zoneOffset(b []byte) (int, bool) {
	if len(b) == 1 && b[0] == 'Z' {
		return 0, true
	}
	if len(b) == 6 && b[3] == ':' {
		b = []byte{b[0], b[1], b[2], b[4], b[5]}
	}
	if len(b) != 5 || (b[0] != '+' && b[0] != '-') {
		return 0, false
	}
	h, ok1 := digits(b[1:3])
	m, ok2 := digits(b[3:5])
	if !ok1 || !ok2 || h > 14 || m > 59 {
		return 0, false
	}
	off := h*3600 + m*60
	if b[0] == '-' {
		off = -off
	}
	return off, true
}

// clf parses the Common Log Format time "10/Oct/2000:13:55:36 -0700".
func (p *Parser) clf(b []byte) (time.Time, bool) {
	if t, ok := p.clfCache.get(b); ok {
		return t, true
	}
	if len(b) != 26 || b[20] != ' ' {
		return time.Time{}, false
	}
	off, ok := zoneOffset(b[21:])
	if !ok {
		return time.Time{}, false
	}
	t, ok := dmyClock(b[:20], p.zones.get(off))
	if !ok {
		return time.Time{}, false
	}
	p.clfCache.put(b, t)
	return t, true
}

// haproxyTime parses "06/Feb/2009:12:14:14.655" in the parser's location.
func (p *Parser) haproxyTime(b []byte) (time.Time, bool) {
	if len(b) < 20 {
		return time.Time{}, false
	}
	t, ok := p.hapCache.get(b[:20])
	if !ok {
		if t, ok = dmyClock(b[:20], p.loc); !ok {
			return time.Time{}, false
		}
		p.hapCache.put(b[:20], t)
	}
	if len(b) > 20 {
		if b[20] != '.' {
			return time.Time{}, false
		}
		ms, ok := digits(b[21:])
		if !ok || len(b) != 24 {
			return time.Time{}, false
		}
		t = t.Add(time.Duration(ms) * time.Millisecond)
	}
	return t, true
}

// bsdTime parses the RFC 3164 stamp "Nov 21 10:00:00" (or "Nov  1 ..."),
// which has no year: the year is the one that puts the stamp no more than
// a day in the future.
func (p *Parser) bsdTime(b []byte) (time.Time, bool) {
	if t, ok := p.sysCache.get(b); ok {
		return t, true
	}
	if len(b) != 15 || b[3] != ' ' || b[6] != ' ' {
		return time.Time{}, false
	}
	mo, ok1 := month(b[0:3])
	dd := b[4:6]
	if dd[0] == ' ' {
		dd = dd[1:]
	}
	d, ok2 := digits(dd)
	h, mi, s, ok3 := clock(b[7:15])
	if !ok1 || !ok2 || !ok3 || d < 1 || d > 31 {
		return time.Time{}, false
	}
	now := p.now().In(p.loc)
	t := time.Date(now.Year(), mo, d, h, mi, s, 0, p.loc)
	if t.After(now.Add(24 * time.Hour)) {
		t = t.AddDate(-1, 0, 0)
	}
	p.sysCache.put(b, t)
	return t, true
}

// isoTime parses RFC 3339 "2026-11-21T10:00:00.123456+00:00" as written by
// rsyslog's high-precision file format.
func (p *Parser) isoTime(b []byte) (time.Time, bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || b[10] != 'T' {
		return time.Time{}, false
	}
	i := 19
	frac, fracDigits := 0, 0
	if b[i] == '.' {
		i++
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			if fracDigits < 9 {
				frac = frac*10 + int(b[i]-'0')
				fracDigits++
			}
			i++
		}
	}
	for k := fracDigits; k < 9; k++ {
		frac *= 10
	}
	zone := b[i:]
	// Cache key: the second and the zone, without the fraction.
	var key [40]byte
	n := copy(key[:], b[:19])
	if len(zone) > len(key)-n {
		return time.Time{}, false
	}
	n += copy(key[n:], zone)
	t, ok := p.isoCache.get(key[:n])
	if !ok {
		off, ok := zoneOffset(zone)
		if !ok {
			return time.Time{}, false
		}
		y, ok1 := digits(b[0:4])
		mo, ok2 := digits(b[5:7])
		d, ok3 := digits(b[8:10])
		h, mi, s, ok4 := clock(b[11:19])
		if !ok1 || !ok2 || !ok3 || !ok4 || mo < 1 || mo > 12 || d < 1 || d > 31 {
			return time.Time{}, false
		}
		t = time.Date(y, time.Month(mo), d, h, mi, s, 0, p.zones.get(off))
		p.isoCache.put(key[:n], t)
	}
	return t.Add(time.Duration(frac)), true
}
