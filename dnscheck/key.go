package dnscheck

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"unicode"

	"github.com/miekg/dns"

	"github.com/migrate-tool/migrate/internal/hint"
)

// KeyEnv is the environment variable that may hold a TSIG key, in either
// key file format.
const KeyEnv = "MIGRATE_TSIG_KEY"

// Key is a TSIG key. Its secret never appears in String, Format or slog
// output, so a Key can be logged safely.
type Key struct {
	Name      string  // canonical: lowercase, fully qualified
	Algorithm string  // miekg/dns algorithm name, e.g. "hmac-sha256."
	secret    *string // base64; a pointer, so printing a Key value shows an address
}

// String names the key without its secret.
func (k *Key) String() string {
	if k == nil {
		return "<no key>"
	}
	return fmt.Sprintf("%s (%s)", strings.TrimSuffix(k.Name, "."), strings.TrimSuffix(k.Algorithm, "."))
}

// GoString keeps %#v from printing the secret.
func (k *Key) GoString() string { return "dnscheck.Key{" + k.String() + "}" }

// LogValue keeps slog from printing the secret.
func (k *Key) LogValue() slog.Value { return slog.StringValue(k.String()) }

// tsig returns the name→secret map miekg/dns wants.
func (k *Key) tsig() map[string]string {
	if k == nil {
		return nil
	}
	return map[string]string{k.Name: *k.secret}
}

// NewKey builds a key from its parts; algorithm is a BIND name such as
// "hmac-sha256" and secret is base64.
func NewKey(name, algorithm, secret string) (*Key, error) {
	alg, ok := algorithms[strings.ToLower(strings.TrimSuffix(algorithm, "."))]
	if !ok {
		return nil, fmt.Errorf("unknown tsig algorithm %q (want one of hmac-sha1, hmac-sha224, hmac-sha256, hmac-sha384, hmac-sha512)", algorithm)
	}
	if _, ok := dns.IsDomainName(name); !ok || name == "" || name == "." {
		return nil, fmt.Errorf("bad tsig key name %q", name)
	}
	raw, err := base64.StdEncoding.DecodeString(secret)
	if err != nil || len(raw) == 0 {
		// The secret itself must not appear in the error.
		return nil, errors.New("tsig key secret is not valid base64")
	}
	return &Key{Name: dns.CanonicalName(name), Algorithm: alg, secret: &secret}, nil
}

var algorithms = map[string]string{
	"hmac-sha1":   dns.HmacSHA1,
	"hmac-sha224": dns.HmacSHA224,
	"hmac-sha256": dns.HmacSHA256,
	"hmac-sha384": dns.HmacSHA384,
	"hmac-sha512": dns.HmacSHA512,
}

// LoadKey reads a key file (see ParseKey). The error never contains the
// file's content.
func LoadKey(path string) (*Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, hint.With(fmt.Errorf("read tsig key: %w", err), "pass a readable key file with --tsig-key, or set "+KeyEnv)
	}
	k, err := ParseKey(string(b))
	if err != nil {
		return nil, hint.With(fmt.Errorf("tsig key %s: %w", path, err), keyFormatHint)
	}
	return k, nil
}

// KeyFromEnv returns the key in $MIGRATE_TSIG_KEY, or nil if it is unset.
func KeyFromEnv() (*Key, error) {
	v, ok := os.LookupEnv(KeyEnv)
	if !ok || strings.TrimSpace(v) == "" {
		return nil, nil
	}
	k, err := ParseKey(v)
	if err != nil {
		return nil, hint.With(fmt.Errorf("tsig key in $%s: %w", KeyEnv, err), keyFormatHint)
	}
	return k, nil
}

const keyFormatHint = `write the key as BIND does (key "name" { algorithm hmac-sha256; secret "BASE64"; };) or as one line name:hmac-sha256:BASE64`

// ParseKey parses a TSIG key in BIND key-file format
//
//	key "name" { algorithm hmac-sha256; secret "BASE64"; };
//
// or as one line "name:algorithm:secret" (also "algorithm:name:secret", the
// order nsupdate -y uses). Errors never quote the secret.
func ParseKey(text string) (*Key, error) {
	t := strings.TrimSpace(stripComments(text))
	if t == "" {
		return nil, errors.New("empty key")
	}
	if strings.HasPrefix(t, "key") && strings.ContainsAny(t, "{") {
		return parseBINDKey(t)
	}
	if strings.ContainsAny(t, "{};\"\n") {
		return nil, errors.New("not a key file: expected key \"name\" { ... }; or name:algorithm:secret")
	}
	f := strings.Split(t, ":")
	if len(f) != 3 {
		return nil, errors.New("expected name:algorithm:secret")
	}
	name, alg, secret := f[0], f[1], f[2]
	if _, ok := algorithms[strings.ToLower(name)]; ok {
		name, alg = alg, name
	}
	return NewKey(name, alg, secret)
}

// parseBINDKey parses the first key statement of a BIND key file.
func parseBINDKey(t string) (*Key, error) {
	toks, err := tokenize(t)
	if err != nil {
		return nil, err
	}
	// key NAME { (algorithm ALG ; | secret S ;)* } ;
	if len(toks) < 4 || toks[0] != "key" || toks[2] != "{" {
		return nil, errors.New(`expected key "name" { algorithm ...; secret "..."; };`)
	}
	name := toks[1]
	var alg, secret string
	i := 3
	for ; i < len(toks) && toks[i] != "}"; i += 3 {
		if i+2 >= len(toks) || toks[i+2] != ";" {
			return nil, fmt.Errorf("key %q: statement %q not closed with ';'", name, toks[i])
		}
		switch toks[i] {
		case "algorithm":
			alg = toks[i+1]
		case "secret":
			secret = toks[i+1]
		default:
			return nil, fmt.Errorf("key %q: unknown statement %q", name, toks[i])
		}
	}
	if i >= len(toks) {
		return nil, fmt.Errorf("key %q: missing '}'", name)
	}
	if alg == "" || secret == "" {
		return nil, fmt.Errorf("key %q: needs both algorithm and secret", name)
	}
	return NewKey(name, alg, secret)
}

// tokenize splits a BIND configuration fragment into words, quoted
// strings (unquoted) and the punctuation { } ;.
func tokenize(s string) ([]string, error) {
	var toks []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case unicode.IsSpace(rune(c)):
			i++
		case c == '{' || c == '}' || c == ';':
			toks = append(toks, string(c))
			i++
		case c == '"':
			j := strings.IndexByte(s[i+1:], '"')
			if j < 0 {
				return nil, errors.New("unterminated quoted string")
			}
			toks = append(toks, s[i+1:i+1+j])
			i += j + 2
		default:
			j := i
			for j < len(s) && !unicode.IsSpace(rune(s[j])) && !strings.ContainsRune("{};\"", rune(s[j])) {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		}
	}
	return toks, nil
}

// stripComments removes #, // and /* */ comments.
func stripComments(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '"':
			j := strings.IndexByte(s[i+1:], '"')
			if j < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			b.WriteString(s[i : i+j+2])
			i += j + 1
		case s[i] == '#' || strings.HasPrefix(s[i:], "//"):
			for i < len(s) && s[i] != '\n' {
				i++
			}
			b.WriteByte('\n')
		case strings.HasPrefix(s[i:], "/*"):
			j := strings.Index(s[i+2:], "*/")
			if j < 0 {
				return b.String()
			}
			i += j + 3
			b.WriteByte(' ')
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
