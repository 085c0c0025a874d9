package tag

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Keys of the comment form.
const (
	KeyUser = "pgwarden_user"
	KeyTime = "pgwarden_ts"
	KeySig  = "pgwarden_sig"
)

// Prefix starts an application_name that carries a tag.
const Prefix = "pgwarden:"

// DefaultSkew is how far a tag's timestamp may be from pgwarden's clock
// when the policy does not say.
const DefaultSkew = 5 * time.Minute

// MinKeyLen is the shortest key pgwarden accepts.
const MinKeyLen = 16

// MaxUserLen bounds the employee name a tag carries, in bytes.
const MaxUserLen = 256

// Domain separation: a comment's signature is never an application_name's.
// Version 2 signs the connection too.
const (
	commentDomain = "pgwarden_tag_v2"
	appNameDomain = "pgwarden_application_name_v2"
)

// Errors a tag is rejected with; Verify and Find wrap them with details.
var (
	ErrMalformed = errors.New("malformed pgwarden tag")
	ErrSignature = errors.New("signature does not match")
	ErrExpired   = errors.New("timestamp outside the accepted skew")
)

// Tag is an identity tag read from a statement or an application_name; it
// names no one until Verify accepts it.
type Tag struct {
	// User is the employee the tag names.
	User string
	// Time is the signing time, in Unix seconds.
	Time int64
	// Body is the statement without the tag comment, trimmed: the text the
	// signature covers and the one to analyze. Empty for the
	// application_name form.
	Body string
	sig  []byte
	// appName is set for the application_name form.
	appName bool
}

// Verify checks the tag's signature under key, in constant time, for the
// connection conn (the backend process id the client was given, which
// its driver reports: pgx's PgConn.PID, libpq's PQbackendPID), and that
// its timestamp is within skew of now. A tag copied onto another
// connection does not verify.
func (t *Tag) Verify(key []byte, conn uint32, now time.Time, skew time.Duration) error {
	var want []byte
	if t.appName {
		want = appNameMAC(key, t.User, conn, t.Time)
	} else {
		want = commentMAC(key, t.User, conn, t.Time, t.Body)
	}
	if !hmac.Equal(want, t.sig) {
		return ErrSignature
	}
	if skew <= 0 {
		skew = DefaultSkew
	}
	d := now.Sub(time.Unix(t.Time, 0))
	if d > skew || d < -skew {
		return fmt.Errorf("%w: signed at %s, %s from now", ErrExpired, time.Unix(t.Time, 0).UTC().Format(time.RFC3339), d.Round(time.Second))
	}
	return nil
}

func commentMAC(key []byte, user string, conn uint32, ts int64, body string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(commentDomain + "\x00" + user + "\x00" + strconv.FormatUint(uint64(conn), 10) + "\x00" + strconv.FormatInt(ts, 10) + "\x00"))
	m.Write([]byte(body))
	return m.Sum(nil)
}

func appNameMAC(key []byte, user string, conn uint32, ts int64) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(appNameDomain + "\x00" + user + "\x00" + strconv.FormatUint(uint64(conn), 10) + "\x00" + strconv.FormatInt(ts, 10)))
	return m.Sum(nil)
}

// Comment returns the sqlcommenter comment that names user as the employee
// of the statement body (already trimmed, as Find computes it), signed with
// key at time at. Sign is what most callers want.
func Comment(key []byte, user string, conn uint32, at time.Time, body string) string {
	ts := at.Unix()
	sig := hex.EncodeToString(commentMAC(key, user, conn, ts, body))
	// Keys in lexical order, as sqlcommenter writes them.
	return "/*" + KeySig + "='" + sig + "'," + KeyTime + "='" + strconv.FormatInt(ts, 10) + "'," +
		KeyUser + "='" + escape(user) + "'*/"
}

// Sign returns sql with a tag naming user appended, signed with key at time
// at for the connection conn (the backend process id the driver reports);
// a final semicolon stays last.
func Sign(key []byte, user string, conn uint32, at time.Time, sql string) string {
	s := trimSpace(sql)
	semi := ""
	if trimmed, ok := strings.CutSuffix(s, ";"); ok && !endsInComment(s) {
		s, semi = trimSpace(trimmed), ";"
	}
	sep := " "
	if endsInComment(s) {
		// A line comment would swallow the tag.
		sep = "\n"
	}
	return s + sep + Comment(key, user, conn, at, s+semi) + semi
}

// ApplicationName returns the application_name value that names user for
// the statements that follow it on the connection conn, signed with key
// at time at. pgwarden honours it for the accepted skew after at: an
// application sets it again (SET LOCAL in each transaction is best).
func ApplicationName(key []byte, user string, conn uint32, at time.Time) string {
	ts := at.Unix()
	return Prefix + escape(user) + ":" + strconv.FormatInt(ts, 10) + ":" + hex.EncodeToString(appNameMAC(key, user, conn, ts))
}

// ParseApplicationName reads the tag of an application_name value: nil and
// no error when v is not one (it does not start with Prefix), an error
// wrapping ErrMalformed when it starts so but is not well formed.
func ParseApplicationName(v string) (*Tag, error) {
	rest, ok := strings.CutPrefix(v, Prefix)
	if !ok {
		return nil, nil
	}
	parts := strings.Split(rest, ":")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: application_name: want %suser:ts:sig", ErrMalformed, Prefix)
	}
	t := &Tag{appName: true}
	var err error
	if t.User, err = user(parts[0]); err != nil {
		return nil, err
	}
	if t.Time, err = timestamp(parts[1]); err != nil {
		return nil, err
	}
	if t.sig, err = signature(parts[2]); err != nil {
		return nil, err
	}
	return t, nil
}

// Find returns the pgwarden tag in the comment at the start or at the end
// of sql: nil and no error when there is none, an error wrapping
// ErrMalformed when such a comment names pgwarden keys but is not a well
// formed tag. A comment elsewhere in the text is never a tag. The tag is
// not verified.
func Find(sql string) (*Tag, error) {
	lead, trail, ok := edgeComments(sql)
	if !ok {
		return nil, nil
	}
	isTag := func(c span) bool { return c.end > 0 && strings.Contains(sql[c.start:c.end], "pgwarden_") }
	var c span
	switch {
	case isTag(trail) && isTag(lead) && trail != lead:
		return nil, fmt.Errorf("%w: tags at both ends of the statement", ErrMalformed)
	case isTag(trail):
		c = trail
	case isTag(lead):
		c = lead
	default:
		return nil, nil
	}
	t, err := parseComment(sql[c.start+2 : c.end-2])
	if err != nil {
		return nil, err
	}
	if c == trail {
		// Only white space and one semicolon follow a trailing comment.
		t.Body = trimSpace(sql[:c.start]) + trimSpace(sql[c.end:])
	} else {
		t.Body = trimSpace(sql[c.end:])
	}
	return t, nil
}

// parseComment reads the pairs of a comment's content.
func parseComment(s string) (*Tag, error) {
	if strings.Contains(s, "/*") || strings.Contains(s, "*/") {
		return nil, fmt.Errorf("%w: nested comment", ErrMalformed)
	}
	pairs, err := splitPairs(trimSpace(s))
	if err != nil {
		return nil, err
	}
	var user_, ts, sig string
	seen := 0
	for _, p := range pairs {
		var dst *string
		switch p[0] {
		case KeyUser:
			dst = &user_
		case KeyTime:
			dst = &ts
		case KeySig:
			dst = &sig
		default:
			continue
		}
		if *dst != "" {
			return nil, fmt.Errorf("%w: %s repeated", ErrMalformed, p[0])
		}
		*dst = p[1]
		seen++
	}
	if seen != 3 || user_ == "" || ts == "" || sig == "" {
		return nil, fmt.Errorf("%w: want %s, %s and %s", ErrMalformed, KeyUser, KeyTime, KeySig)
	}
	t := &Tag{}
	if t.User, err = user(user_); err != nil {
		return nil, err
	}
	if t.Time, err = timestamp(ts); err != nil {
		return nil, err
	}
	if t.sig, err = signature(sig); err != nil {
		return nil, err
	}
	return t, nil
}

// splitPairs splits key='value',key='value' into decoded pairs.
func splitPairs(s string) ([][2]string, error) {
	var out [][2]string
	for len(s) > 0 {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("%w: want key='value' pairs", ErrMalformed)
		}
		key, err := unescape(trimSpace(s[:eq]))
		if err != nil || key == "" || strings.ContainsAny(key, "',") {
			return nil, fmt.Errorf("%w: bad key %q", ErrMalformed, s[:eq])
		}
		s = strings.TrimLeft(s[eq+1:], " \t")
		if len(s) == 0 || s[0] != '\'' {
			return nil, fmt.Errorf("%w: value of %s not quoted", ErrMalformed, key)
		}
		// The value ends at the first quote not escaped with a backslash.
		var raw strings.Builder
		i := 1
		for ; i < len(s) && s[i] != '\''; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
			}
			raw.WriteByte(s[i])
		}
		if i == len(s) {
			return nil, fmt.Errorf("%w: value of %s not closed", ErrMalformed, key)
		}
		val, err := unescape(raw.String())
		if err != nil {
			return nil, fmt.Errorf("%w: value of %s: %v", ErrMalformed, key, err)
		}
		out = append(out, [2]string{key, val})
		s = strings.TrimLeft(s[i+1:], " \t\r\n")
		if len(s) == 0 {
			break
		}
		if s[0] != ',' {
			return nil, fmt.Errorf("%w: want a comma after %s", ErrMalformed, key)
		}
		s = strings.TrimLeft(s[1:], " \t\r\n")
		if len(s) == 0 {
			return nil, fmt.Errorf("%w: trailing comma", ErrMalformed)
		}
	}
	return out, nil
}

func user(s string) (string, error) {
	u, err := unescape(s)
	switch {
	case err != nil:
		return "", fmt.Errorf("%w: user: %v", ErrMalformed, err)
	case u == "":
		return "", fmt.Errorf("%w: empty user", ErrMalformed)
	case len(u) > MaxUserLen:
		return "", fmt.Errorf("%w: user longer than %d bytes", ErrMalformed, MaxUserLen)
	case !utf8.ValidString(u):
		return "", fmt.Errorf("%w: user is not UTF-8", ErrMalformed)
	}
	for _, r := range u {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("%w: control character in user", ErrMalformed)
		}
	}
	return u, nil
}

func timestamp(s string) (int64, error) {
	if len(s) == 0 || len(s) > 12 || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("%w: timestamp %q: want Unix seconds", ErrMalformed, s)
	}
	return strconv.ParseInt(s, 10, 64)
}

func signature(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("%w: signature: want %d hex digits", ErrMalformed, 2*sha256.Size)
	}
	return b, nil
}

// escape URL-encodes s, leaving only unreserved characters (RFC 3986) as
// they are: what sqlcommenter asks, and no quote is left to escape.
func escape(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

// unescape decodes %XX sequences; '+' is a plus, as sqlcommenter encodes
// spaces as %20.
func unescape(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errors.New("truncated escape")
		}
		v, err := hex.DecodeString(s[i+1 : i+3])
		if err != nil {
			return "", fmt.Errorf("bad escape %q", s[i:i+3])
		}
		b.WriteByte(v[0])
		i += 2
	}
	return b.String(), nil
}

// trimSpace trims the bytes PostgreSQL's scanner takes for white space.
// Unicode spaces (U+00A0, ...) are not white space to it but part of an
// identifier, so they are kept: the signed text is the text that runs.
func trimSpace(s string) string { return strings.Trim(s, " \t\n\r\f\v") }
