package scram

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
)

func TestNormalizePassword(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"ASCII unchanged", "pencil", "pencil"},
		{"ASCII control characters unchanged", "a\x07b", "a\x07b"},
		{"empty", "", ""},
		{"soft hyphen mapped to nothing (RFC 4013)", "I\u00adX", "IX"},
		{"feminine ordinal NFKC (RFC 4013)", "\u00aa", "a"},
		{"roman numeral nine NFKC (RFC 4013)", "\u2168", "IX"},
		{"ligature NFKC", "\ufb01", "fi"},
		{"full-width letters NFKC", "\uff50\uff41\uff53\uff53", "pass"},
		{"no-break space to space", "a\u00a0b", "a b"},
		{"zero width space to space", "x\u200by", "x y"},
		{"combining accent composed", "cafe\u0301", "caf\u00e9"},
		{"right-to-left only", "\u0627\u0628", "\u0627\u0628"},
		{"prohibited control, used as is (RFC 4013)", "\u00e9\u0007", "\u00e9\u0007"},
		{"unassigned in Unicode 3.2, used as is", "\u0221x", "\u0221x"},
		{"emoji (unassigned in Unicode 3.2), used as is", "\U0001f600pw", "\U0001f600pw"},
		{"mixed bidi, used as is (RFC 4013)", "\u06271", "\u06271"},
		{"right-to-left with left-to-right, used as is", "\u0627a\u0628", "\u0627a\u0628"},
		{"only mapped-to-nothing, used as is", "\u00ad", "\u00ad"},
		{"invalid UTF-8, used as is", "p\xffw", "p\xffw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := normalizePassword(tt.in); got != tt.want {
				t.Errorf("normalizePassword(%+q) = %+q, want %+q", tt.in, got, tt.want)
			}
		})
	}
}

// TestPostgreSQLSecrets checks the normalisation against secrets that
// PostgreSQL 15 stored for CREATE ROLE ... PASSWORD U&'...' (pg_authid.rolpassword).
func TestPostgreSQLSecrets(t *testing.T) {
	tests := []struct {
		password, secret string
	}{
		{"pencil", "SCRAM-SHA-256$4096:cy8P04TWWpux9g5xX035SA==$SiBqTHUMSf+2TL5lmI+JlQRNYUGviYU86Hg2CVlsydw=:v/EeB9VBjDiNaix1V6xXKLM8bJMISpkMfo3osH7v6pk="},
		{"I\u00adX", "SCRAM-SHA-256$4096:pblvDdZh9WnHxEm6ro0I2w==$+AeSYyJOHFsbOJ5xdMP48BIxuaJ4Pih4tf6RfP5dUzU=:YF/b7HF9kWvox/lrYXG3zCz20+XN0ZQ5GvnISjGuZqA="},
		{"\ufb01", "SCRAM-SHA-256$4096:YnVk+/W1wQt9jld71SFvDA==$2gbV49WRnPrE1saYhyffXHrJGFo/zIciSrWcmVregPI=:afRuF0nm9Fd4iuFLGVZ2vtSRzXhaEPepJEoZs2UzVsw="},
		{"\uff50\uff41\uff53\uff53", "SCRAM-SHA-256$4096:6nSkrO6dRZM1lV/6F7qfrA==$5jdllbashBiTOJredYZwkaDqYhRgMi5IDDQn9iZr7g0=:6AqRWeUFB1C3c4M5GN+kowuO6BoPOr4mF49pi+M2Snk="},
		{"a\u00a0b", "SCRAM-SHA-256$4096:BgJU/+KOrN0E2ugauLmmWA==$zpP37terNDDGKYhdevQ31aFzSEBZP4NDc+qK7eXu9os=:naf9DefXR+DUG7m9MzVzpWYcazNgknYIaxHIrbo7AEU="},
		{"\u2168", "SCRAM-SHA-256$4096:TUFxF0MczSxCDfh1lmSCWQ==$2PqkfY/Y5bQhW7sM2Z4HbMJBcDcrYK+J3wyls4+FV4s=:HRiDb3yuxyqgpJJKICMui0XtoNdYMRmBwHiAwyI9vsg="},
		{"cafe\u0301", "SCRAM-SHA-256$4096:DvicpocLVSt/riM+nxtoWQ==$0tXZYJGdm7MLpQYJxRY2KH1iDFe53Nh/Rp41Y1pgwvA=:hox7tInRTdzVYTGGRuLKOyL9VZXVF8lFkZzpTLAD4to="},
		{"\u0221x", "SCRAM-SHA-256$4096:bJAPWSW2yEnANL7iibZc6g==$0DWf1qlAYvVL2fFIFPQ19FS6exHBuQlGptGw4+a8UYE=:qxBGhZDrtq2VI4NbdExyEreEzOnhu6B0fBV6MvUSSoE="},
		{"\u06271", "SCRAM-SHA-256$4096:W9BY/z8+883a3kqtqQFxIg==$OSLdixHC/YVhJZdo9lry5Try76e0wR10CIZfmH+aAOs=:OaFVLNpt0k6j1ZdyqhLduOkCiYXbf/TJ3qYig8obCxs="},
		{"\u00ad", "SCRAM-SHA-256$4096:uOh3DzlDmGimo12C8EiooA==$WpCmNWQGUwdIv/Zkdnn8FYNetuhklkIJa4j+KHpoVtA=:x6l70Mzn0unEaz+cMYPSRYdbU32HDS/1bE1DWTBx3jg="},
		{"\u00e9\u0007", "SCRAM-SHA-256$4096:Jwi754CNjqhhaYwXNpI5Ug==$CuOzNa2x1YUv+KEu9YnZAV2bIGF3pm9um9Mu8D25TPE=:bliceEWmhMKMmf+OJKl5Hx97qRQyjSCxFaFitYeivnE="},
		{"x\u200by", "SCRAM-SHA-256$4096:LDxABHlg1cQKAEDMJ+b5tg==$z5jyuS+oILnSN7lhDll2Jfd8PE5uhYbgrXOycJw94AA=:f3Mc7dNGUnZoykm/KHuSZrD9ak+ubGacIdpZWGjwZ+s="},
		{"\u0627\u0628", "SCRAM-SHA-256$4096:922UnqnP0Ix3Y1r6sLSlhg==$hJNIxyOpdiVTHqqIcnDAaij2u1/f/VNDA2m0MInkf0Q=:MIjtbUT7jxEkm2Vg0vuGA1e5GiILH2eWH3p3urOBxgs="},
		{"\U0001f600pw", "SCRAM-SHA-256$4096:GUBEDox2yIV86TNxiGRwJw==$4IkS9pnL58u3l21y1nq6HR9seoQN6UN5tessjp7YC3A=:yuOfycx1oadPwkjXz/jspbGkWY+75lqQuMuc4YsubmE="},
	}
	for _, tt := range tests {
		t.Run(strconv.QuoteToASCII(tt.password), func(t *testing.T) {
			// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
			var iterations int
			var salt, storedKey, serverKey []byte
			{
				rest := strings.TrimPrefix(tt.secret, "SCRAM-SHA-256$")
				params, keys, _ := strings.Cut(rest, "$")
				iter, saltB64, _ := strings.Cut(params, ":")
				stored, server, _ := strings.Cut(keys, ":")
				var err error
				iterations, err = strconv.Atoi(iter)
				if err != nil {
					t.Fatal(err)
				}
				salt = mustBase64(t, saltB64)
				storedKey = mustBase64(t, stored)
				serverKey = mustBase64(t, server)
			}
			salted, err := pbkdf2.Key(sha256.New, normalizePassword(tt.password), salt, iterations, sha256.Size)
			if err != nil {
				t.Fatal(err)
			}
			gotStored := sha256.Sum256(computeHMAC(salted, "Client Key"))
			if !bytes.Equal(gotStored[:], storedKey) || !bytes.Equal(computeHMAC(salted, "Server Key"), serverKey) {
				t.Errorf("keys derived from %+q differ from PostgreSQL's", normalizePassword(tt.password))
			}
		})
	}
}

func mustBase64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
