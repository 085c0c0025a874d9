package detect

import (
	"crypto/md5"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/pgwarden/pgwarden/policy/pii"
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
	for _, cat := range pii.Detectable() {
		s, err := New([]pii.Category{cat}, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(string(cat)+"/rows", func(b *testing.B) { benchRows(b, s, rows) })
		b.Run(string(cat)+"/clean", func(b *testing.B) { benchRows(b, s, clean) })
	}
}

// peopleCorpus returns n rows of synthetic people as the end-to-end
// benchmark's -data pii workload returns them (test/bench/workloads.go):
// id, full name, email, phone, SSN and postal address, one value per
// column, as "1234 | Maria Garcia | maria.garcia1234@example.com |
// +1 415 555 1234 | 123-45-6789 | 1234 Oak Street, Apt 12, Springfield,
// IL 62123".
func peopleCorpus(n int) [][6][]byte {
	first := []string{"Maria", "James", "Wei", "Aisha", "Olga", "Carlos", "Yuki", "Fatima", "John", "Priya"}
	last := []string{"Garcia", "Smith", "Zhang", "Okafor", "Ivanova", "Silva", "Tanaka", "Haddad", "Miller", "Patel"}
	street := []string{"Oak", "Maple", "Cedar", "Elm", "Pine", "Birch", "Walnut", "Willow"}
	rows := make([][6][]byte, n)
	for k := range rows {
		g := k + 1
		f, l, s := first[g%10], last[g/10%10], street[g/100%8]
		rows[k] = [6][]byte{
			fmt.Appendf(nil, "%d", g),
			fmt.Appendf(nil, "%s %s", f, l),
			fmt.Appendf(nil, "%s.%s%d@example.com", strings.ToLower(f), strings.ToLower(l), g),
			fmt.Appendf(nil, "+1 415 555 %04d", g%10000),
			fmt.Appendf(nil, "%d-%02d-%04d", 100+g%500, 1+g%98, 1+g%9998),
			fmt.Appendf(nil, "%d %s Street, Apt %d, Springfield, IL 62%03d", 100+g%9000, s, 1+g%300, g%1000),
		}
	}
	return rows
}

// benchPeople scans each row's six column values separately, as the proxy
// does with a DataRow; one op is one row.
func benchPeople(b *testing.B, s *Set, rows [][6][]byte) {
	total := 0
	for _, r := range rows {
		for _, v := range r {
			total += len(v)
		}
	}
	b.SetBytes(int64(total / len(rows)))
	var c Counts
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		for _, v := range &rows[i%len(rows)] {
			s.Scan(v, &c)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/row")
	b.ReportMetric(float64(total/len(rows)), "B/row")
}

// hexCorpus returns n values as test/bench's -data hex rows hold them:
// 140 characters of md5 hex, left(repeat(md5(g::text), 5), 140).
func hexCorpus(n int) [][]byte {
	rows := make([][]byte, n)
	for k := range rows {
		h := fmt.Sprintf("%x", md5.Sum([]byte(strconv.Itoa(k+1))))
		rows[k] = []byte(strings.Repeat(h, 5)[:140])
	}
	return rows
}

// BenchmarkScanAll measures Default, every built-in detector at once.
func BenchmarkScanAll(b *testing.B) {
	rows, clean, people := rowCorpus(256), cleanCorpus(64), peopleCorpus(1000)
	b.Run("rows", func(b *testing.B) { benchRows(b, Default(), rows) })
	b.Run("md5hex", func(b *testing.B) { benchRows(b, Default(), hexCorpus(1000)) })
	b.Run("clean", func(b *testing.B) { benchRows(b, Default(), clean) })
	b.Run("people", func(b *testing.B) { benchPeople(b, Default(), people) })
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
	for _, r := range peopleCorpus(1000) {
		// An email, a phone number and an SSN; the id and address none.
		for col, v := range r {
			want := 0
			switch col {
			case 2, 3, 4:
				want = 1
			}
			if n := Default().Scan(v, &c); n != want {
				t.Errorf("people column %d %q: %d values, want %d (%s)", col, v, n, want, describe(&c))
			}
			c.Reset()
		}
	}
	for _, r := range cleanCorpus(4) {
		if n := Default().Scan(r, &c); n != 0 {
			t.Errorf("clean row %q: %d values", r, n)
		}
	}
}
