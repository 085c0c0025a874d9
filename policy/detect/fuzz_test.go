package detect

import "testing"

func FuzzScan(f *testing.F) {
	for _, seed := range []string{
		"", "a@b.co", "::1", "+14155550101", "(415) 555-0101", "078-05-1120",
		"4111 1111 1111 1111", "DE89 3704 0044 0532 0130 00", "1.2.3.4.5",
		"{a@x.com,b@y.org}", `[{"email":"a@x.com","phone":"+14155550101"}]`,
		"::ffff:192.0.2.1", "fe80::1::2", "@@@...:::(((+++", "GB82WEST12345698765432",
	} {
		f.Add([]byte(seed))
	}
	s := Default()
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Counts
		n := s.Scan(b, &c)
		if n != c.Total() {
			t.Fatalf("Scan returned %d, counted %d", n, c.Total())
		}
		if n > len(b)/3 {
			t.Fatalf("Scan found %d values in %d bytes %q", n, len(b), b)
		}
		if n2 := s.Scan(b, &c); n2 != n {
			t.Fatalf("second Scan found %d, first %d", n2, n)
		}
	})
}
