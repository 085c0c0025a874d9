package detect

import (
	"fmt"
	"strings"
	"testing"
)

// rowCorpus returns n text rows of about 150 bytes in the shapes a
// customers/orders query returns: names, addresses, ids, dates, amounts,
// and one or two PII values per row.
func rowCorpus(n int) [][]byte {
	first := []string{"Ann", "Bo", "Carla", "Dmitri", "Esther", "Farid", "Grace", "Hiro"}
	last := []string{"Lee", "Wu", "Okafor", "Ivanova", "García", "Smith", "Nakamura", "Haddad"}
	pii := []string{
		"ann.lee%d@example.com", "+1415555%04d", "(415) 555-%04d", "020 7946 %04d",
		"078-05-%04d", "4111 1111 1111 1111", "DE89370400440532013000", "10.%d.0.7",
	}
	rows := make([][]byte, n)
	for k := range rows {
		p := pii[k%len(pii)]
		if strings.Contains(p, "%") {
			p = fmt.Sprintf(p, k%200+1)
		}
		rows[k] = fmt.Appendf(nil, "%d\t%s %s\t%d Main Street, Apt %d, Springfield IL 62704\t%s\t2024-%02d-%02d 10:%02d:00+00\t%d.%02d\tORD-%08d\tactive\tgold tier customer",
			100000+k, first[k%8], last[(k/8)%8], k%900+1, k%40+1, p, k%12+1, k%28+1, k%60, k%5000, k%100, 7000000+k)
	}
	return rows
}

// cleanCorpus returns n rows of about 150 bytes of PII-free text.
func cleanCorpus(n int) [][]byte {
	rows := make([][]byte, n)
	for k := range rows {
		rows[k] = fmt.Appendf(nil, "The quarterly report for the northern region shows steady growth in subscriptions; churn stayed flat and support tickets were resolved quickly. %d", k)
	}
	return rows
}

func benchRows(b *testing.B, s *Set, rows [][]byte) {
	total := 0
	for _, r := range rows {
		total += len(r)
	}
	b.SetBytes(int64(total / len(rows)))
	var c Counts
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		s.Scan(rows[i%len(rows)], &c)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/row")
	b.ReportMetric(float64(total/len(rows)), "B/row")
}

// BenchmarkScan measures each built-in detector alone.
func BenchmarkScan(b *testing.B) {
	rows, clean := rowCorpus(256), cleanCorpus(64)
	for _, cat := range Builtins() {
		s, err := New([]Category{cat}, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(string(cat)+"/rows", func(b *testing.B) { benchRows(b, s, rows) })
		b.Run(string(cat)+"/clean", func(b *testing.B) { benchRows(b, s, clean) })
	}
}

// BenchmarkScanAll measures Default, every built-in detector at once.
func BenchmarkScanAll(b *testing.B) {
	rows, clean := rowCorpus(256), cleanCorpus(64)
	b.Run("rows", func(b *testing.B) { benchRows(b, Default(), rows) })
	b.Run("clean", func(b *testing.B) { benchRows(b, Default(), clean) })
}

func TestRowCorpusCounts(t *testing.T) {
	// The benchmark corpus holds exactly one PII value per row.
	var c Counts
	for _, r := range rowCorpus(256) {
		if n := Default().Scan(r, &c); n != 1 {
			t.Errorf("row %q: %d values (%s)", r, n, describe(&c))
		}
		c.Reset()
	}
	for _, r := range cleanCorpus(4) {
		if n := Default().Scan(r, &c); n != 0 {
			t.Errorf("clean row %q: %d values", r, n)
		}
	}
}
