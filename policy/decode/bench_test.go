package decode

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgwarden/pgwarden/policy/detect"
)

// BenchmarkScan is the cost of finding the text in one value, detectors
// included: a binary text[] of 20 addresses, a base64 text of 20, an
// ordinary name (not encoded: decoding is tried and given up at once), a
// hash in hex as test/bench's rows hold it (decoded as far as the bytes
// that show it is no text).
func BenchmarkScan(b *testing.B) {
	var emails []string
	for i := range 20 {
		emails = append(emails, fmt.Sprintf("customer%d@example.com", i))
	}
	arr, err := pgtype.NewMap().Encode(1009, pgtype.BinaryFormatCode, emails, nil)
	if err != nil {
		b.Fatal(err)
	}
	packed := fmt.Sprint(emails)
	set := detect.Default()
	for _, tc := range []struct {
		name string
		k    Kind
		oid  uint32
		v    []byte
	}{
		{"binary text[20]", Binary, 1009, arr},
		{"base64 of 20", Encoded, oidText, []byte(base64.StdEncoding.EncodeToString([]byte(packed)))},
		{"name", Encoded, oidText, []byte("Maria Garcia-Lopez")},
		{"md5 hex", Encoded, oidText, []byte(strings.Repeat("c4ca4238a0b923820dcc509a6f75849b", 5)[:140])},
		{"json without PII", Nested, oidJSONB, []byte(`{"theme": "dark", "locale": "en-GB", "widgets": [{"id": 1, "kind": "chart", "title": "Weekly orders"},` +
			` {"id": 2, "kind": "table", "title": "Open tickets", "columns": ["priority", "status", "assignee"]}], "last_seen": "2024-05-01T10:00:00Z"}`)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var d Decoder
			var c detect.Counts
			scan := func(p []byte, _ bool) int { return set.Scan(p, &c) }
			b.SetBytes(int64(len(tc.v)))
			b.ReportAllocs()
			for b.Loop() {
				c.Reset()
				d.Scan(tc.k, tc.oid, tc.v, scan)
			}
		})
	}
}
