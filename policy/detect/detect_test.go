package detect

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pgwarden/pgwarden/policy/pii"
)

// scan runs Default over s and returns the counts.
func scan(t *testing.T, s string) *Counts {
	t.Helper()
	var c Counts
	n := Default().Scan([]byte(s), &c)
	if n != c.Total() {
		t.Fatalf("Scan(%q) returned %d but counted %d", s, n, c.Total())
	}
	return &c
}

// describe renders counts as "email=2 phone=1" for failure messages.
func describe(c *Counts) string {
	var sb strings.Builder
	c.Each(func(cat pii.Category, n int) { fmt.Fprintf(&sb, "%s=%d ", cat, n) })
	return strings.TrimSpace(sb.String())
}

type detectCase struct {
	name string
	in   string
	want int
}

// runCategory checks that each input yields want values of cat and no
// values of any other category.
func runCategory(t *testing.T, cat pii.Category, cases []detectCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := scan(t, tc.in)
			if c.Get(cat) != tc.want || c.Total() != tc.want {
				t.Errorf("Scan(%q): got %q, want %s=%d only", tc.in, describe(c), cat, tc.want)
			}
		})
	}
}

func TestEmail(t *testing.T) {
	runCategory(t, pii.Email, []detectCase{
		{"plain address", "alice@example.com", 1},
		{"plus tag and dots", "first.last+tag@mail.example.co.uk", 1},
		{"upper case", "Bob.Smith@Example.ORG", 1},
		{"in a sentence with trailing dot", "write to carol@example.net.", 1},
		{"angle brackets", "Carol <carol@example.net>", 1},
		{"lower(email) output", "dave_99@corp-mail.io", 1},
		{"digits in local part are not a phone", "4155550101@sms.example.com", 1},
		{"domain alone", "example.com", 0},
		{"no TLD", "a@b", 0},
		{"numeric TLD", "a@b.123", 0},
		{"one-letter TLD", "a@b.c", 0},
		{"empty local part", "@example.com", 0},
		{"empty label", "a@example..com", 0},
		{"at sign in prose", "meet @ noon", 0},
		{"postgres role mention", "user@localhost", 0},
	})
}

func TestPhone(t *testing.T) {
	runCategory(t, pii.Phone, []detectCase{
		{"E.164 bare", "+14155550101", 1},
		{"E.164 grouped", "+44 20 7946 0958", 1},
		{"E.164 with trunk in parentheses", "+44 (0)20 7946 0958", 1},
		{"E.164 dashed", "+1-415-555-0101", 1},
		{"E.164 with US parentheses", "+1 (415) 555-0101", 1},
		{"French international", "+33 6 12 34 56 78", 1},
		{"US parentheses", "(415) 555-0101", 1},
		{"US parentheses no space", "(415)555-0101", 1},
		{"US dashed", "415-555-0101", 1},
		{"US dotted", "415.555.0101", 1},
		{"US spaced", "415 555 0101", 1},
		{"US with country 1", "1-415-555-0101", 1},
		{"UK London", "020 7946 0958", 1},
		{"UK mobile", "07700 900123", 1},
		{"French mobile", "06 12 34 56 78", 1},
		{"German area code in parentheses", "(030) 1234567", 1},
		{"two in a CSV line", "415-555-0101,020 7946 0958", 2},
		{"string_agg with a space", "415-555-0101 415-555-0102 +14155550103", 3},
		{"space-joined national numbers", "020 7946 0958 020 7946 0959", 2},
		{"many space-grouped numbers joined by spaces", strings.Repeat("415 555 0101 ", 20), 20},
		{"long dashed run", "415-555-0101-415-555-0102-415-555-0103", 0},
		{"order id", "123456789", 0},
		{"long integer id", "4155550101", 0},
		{"date", "2024-01-15", 0},
		{"european date", "15.01.2024", 0},
		{"timestamp", "2024-01-15 12:30:45", 0},
		{"time", "12:30:45.123", 0},
		{"amount", "1,234.56", 0},
		{"amount with thousands dots", "1.234.567,89", 0},
		{"uuid", "123e4567-e89b-12d3-a456-426614174000", 0},
		{"all-digit uuid shape", "12345678-1234-5678-9012-345678901234", 0},
		{"E.164 too short", "+1234567", 0},
		{"E.164 too long", "+1234567890123456", 0},
		{"US area code starting 1", "115-555-0101", 0},
		{"ISBN", "0-306-40615-2", 0},
		{"mixed dots and dashes", "415.555-0101", 0},
		{"phone glued to a word", "x415-555-0101", 0},
		{"phone continuing as a longer number", "415-555-0101-22", 0},
	})
}

func TestNationalID(t *testing.T) {
	runCategory(t, pii.NationalID, []detectCase{
		{"dashed SSN", "123-45-6789", 1},
		{"SSN in a sentence", "ssn: 078-05-1120.", 1},
		{"area 000", "000-12-3456", 0},
		{"area 666", "666-12-3456", 0},
		{"area 9xx", "912-34-5678", 0},
		{"group 00", "123-00-4567", 0},
		{"serial 0000", "123-45-0000", 0},
		{"bare nine digits", "123456789", 0},
		{"spaced", "123 45 6789", 0},
		{"longer dashed number", "123-45-6789-1", 0},
		{"inside a word", "ID123-45-6789", 0},
	})
}

func TestCard(t *testing.T) {
	runCategory(t, pii.Card, []detectCase{
		{"visa bare", "4111111111111111", 1},
		{"visa spaced", "4111 1111 1111 1111", 1},
		{"visa dashed", "4111-1111-1111-1111", 1},
		{"mastercard", "5555 5555 5555 4444", 1},
		{"mastercard 2-series", "2223003122003222", 1},
		{"amex 4-6-5", "3782 822463 10005", 1},
		{"discover", "6011111111111117", 1},
		{"visa 13 digits", "4222222222222", 1},
		{"string_agg with a space", "4111 1111 1111 1111 5555 5555 5555 4444 4111111111111111", 3},
		{"string_agg with a comma", "4111-1111-1111-1111,5555-5555-5555-4444", 2},
		{"luhn failure", "4111 1111 1111 1112", 0},
		{"unknown issuer", "9111111111111111", 0},
		{"wrong length for visa", "41111111111111", 0},
		{"mixed separators", "4111 1111-1111 1111", 0},
		{"odd grouping", "41 1111 1111 111111", 0},
		{"too many digits", "41111111111111111111", 0},
	})
}

func TestIBAN(t *testing.T) {
	runCategory(t, pii.IBAN, []detectCase{
		{"german bare", "DE89370400440532013000", 1},
		{"german grouped", "DE89 3704 0044 0532 0130 00", 1},
		{"british with letters", "GB82WEST12345698765432", 1},
		{"french", "FR1420041010050500013M02606", 1},
		{"in text", "iban=NL91ABNA0417164300;", 1},
		{"wrong check digits", "DE88370400440532013000", 0},
		{"wrong length", "DE8937040044053201300", 0},
		{"unknown country", "ZZ89370400440532013000", 0},
		{"lower case", "de89370400440532013000", 0},
		{"glued to a word", "XDE89370400440532013000", 0},
	})
}

func TestIP(t *testing.T) {
	runCategory(t, pii.IP, []detectCase{
		{"ipv4", "192.168.1.20", 1},
		{"ipv4 with port", "10.0.0.1:5432", 1},
		{"ipv4 cidr", "10.0.0.0/8", 1},
		{"ipv4 in inet text", "client 203.0.113.7 connected", 1},
		{"ipv6 full", "2001:0db8:0000:0000:0000:ff00:0042:8329", 1},
		{"ipv6 compressed", "2001:db8::ff00:42:8329", 1},
		{"ipv6 link local", "fe80::1", 1},
		{"ipv6 loopback", "::1", 1},
		{"ipv6 mapped ipv4", "::ffff:192.0.2.128", 1},
		{"ipv6 with prefix", "2001:db8::/32", 1},
		{"three-part version", "1.2.3", 0},
		{"five-part version", "1.2.3.4.5", 0},
		{"v-prefixed version", "v10.0.1", 0},
		{"five-part address-like", "10.0.0.1.2", 0},
		{"oid", "1.3.6.1.4.1.311", 0},
		{"any address", "listen 0.0.0.0", 0},
		{"broadcast", "255.255.255.255", 0},
		{"two addresses in a CSV line", "10.0.0.1/24,2001:db8::1", 2},
		{"ipv6 in brackets with port", "[2001:db8::1]:5432", 1},
		{"octet over 255", "256.1.1.1", 0},
		{"leading zero octet", "10.01.0.1", 0},
		{"time", "12:30:45", 0},
		{"mac address", "00:1a:2b:3c:4d:5e", 0},
		{"postgres cast", "'abc'::text", 0},
		{"hex word cast", "x = cafe::int", 0},
		{"two double colons", "1::2::3", 0},
		{"dotted name prefix", "host.10.0.0.1", 0},
	})
}

func TestNoPIIInOrdinaryValues(t *testing.T) {
	for _, in := range []string{
		"", "Alice Smith", "42", "3.14159", "-17", "2024-01-15T12:30:45.123456+00",
		"$1,299.00", "1 234 567,89", "INV-2024-000123", "ORD123456789", "SKU 88-1234",
		"550e8400-e29b-41d4-a716-446655440000", `{"qty": 3, "price": 19.99}`,
		"PostgreSQL 16.2 on x86_64-pc-linux-gnu", "(1,2)", "{1,2,3}", "1,2,3,4,5,6,7,8,9,10",
		"00:00:00", "+1", "++", "()", "...", "::", "12345678901234567890",
	} {
		if c := scan(t, in); c.Total() != 0 {
			t.Errorf("Scan(%q) = %s, want nothing", in, describe(c))
		}
	}
}

func TestPacking(t *testing.T) {
	var emails []string
	for k := 0; k < 100; k++ {
		emails = append(emails, fmt.Sprintf("user%d@example%d.com", k, k%7))
	}
	var jsonAgg strings.Builder
	jsonAgg.WriteString("[")
	for k := 0; k < 50; k++ {
		if k > 0 {
			jsonAgg.WriteString(", \n ")
		}
		fmt.Fprintf(&jsonAgg, `{"id":%d,"email":"u%d@x.com","phone":"+1415555%04d","created_at":"2024-01-%02dT10:00:00"}`, k+1, k, k, k%28+1)
	}
	jsonAgg.WriteString("]")

	tests := []struct {
		name string
		in   string
		want map[pii.Category]int
	}{
		{"string_agg of 100 emails", strings.Join(emails, ","), map[pii.Category]int{pii.Email: 100}},
		{"string_agg with '; ' separator", strings.Join(emails[:10], "; "), map[pii.Category]int{pii.Email: 10}},
		{"json_agg of 50 customers", jsonAgg.String(), map[pii.Category]int{pii.Email: 50, pii.Phone: 50}},
		{"array literal", "{a@x.com,b@y.org}", map[pii.Category]int{pii.Email: 2}},
		{"quoted array literal", `{"a@x.com","b@y.org","c@z.net"}`, map[pii.Category]int{pii.Email: 3}},
		{"array_agg of rows", `{"(1,\"Ann Lee\",ann@x.com,415-555-0101)","(2,\"Bo Wu\",bo@y.org,415-555-0102)"}`,
			map[pii.Category]int{pii.Email: 2, pii.Phone: 2}},
		{"row_to_json", `{"id":7,"full_name":"Ann Lee","email":"ann@x.com","phone":"(415) 555-0101","ssn":"078-05-1120","address":"12 Main St"}`,
			map[pii.Category]int{pii.Email: 1, pii.Phone: 1, pii.NationalID: 1}},
		{"COPY CSV line", `7,Ann Lee,ann@x.com,+44 20 7946 0958,078-05-1120,"12 Main St, Springfield",2024-01-15 10:00:00+00`,
			map[pii.Category]int{pii.Email: 1, pii.Phone: 1, pii.NationalID: 1}},
		{"COPY text line", "7\tAnn Lee\tann@x.com\t415.555.0101\t4111111111111111\tDE89370400440532013000\t10.1.2.3\n",
			map[pii.Category]int{pii.Email: 1, pii.Phone: 1, pii.Card: 1, pii.IBAN: 1, pii.IP: 1}},
		{"concatenation without separator", "ann@x.com415-555-0101", map[pii.Category]int{pii.Email: 1, pii.Phone: 1}},
		{"concatenation with separator", "ann@x.com|415-555-0101|078-05-1120", map[pii.Category]int{pii.Email: 1, pii.Phone: 1, pii.NationalID: 1}},
		{"notice message", `NOTICE:  customer ann@x.com (415) 555-0101`, map[pii.Category]int{pii.Email: 1, pii.Phone: 1}},
		{"query_to_xml", `<row><email>ann@x.com</email><ip>::1</ip></row>`, map[pii.Category]int{pii.Email: 1, pii.IP: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := scan(t, tc.in)
			total := 0
			for cat, n := range tc.want {
				total += n
				if got := c.Get(cat); got != n {
					t.Errorf("%s: got %d, want %d (all: %s)", cat, got, n, describe(c))
				}
			}
			if c.Total() != total {
				t.Errorf("total: got %d (%s), want %d", c.Total(), describe(c), total)
			}
		})
	}
}

func TestOneCategoryPerRange(t *testing.T) {
	// Each value has a shape a less specific detector might also accept;
	// it must count once, in its own category.
	tests := []struct {
		in  string
		cat pii.Category
	}{
		{"4111 1111 1111 1111", pii.Card},
		{"078-05-1120", pii.NationalID},
		{"DE89 3704 0044 0532 0130 00", pii.IBAN},
		{"192.168.100.200", pii.IP},
		{"bob.4155550101@example.com", pii.Email},
	}
	for _, tc := range tests {
		c := scan(t, tc.in)
		if c.Get(tc.cat) != 1 || c.Total() != 1 {
			t.Errorf("Scan(%q) = %s, want %s=1 only", tc.in, describe(c), tc.cat)
		}
	}
}

func TestSubsetOfBuiltins(t *testing.T) {
	s, err := New([]pii.Category{pii.Phone}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var c Counts
	in := "4111 1111 1111 1111, ann+14155550101@x.com, 078-05-1120, +14155550101"
	if n := s.Scan([]byte(in), &c); n != 1 || c.Get(pii.Phone) != 1 {
		t.Errorf("phone-only set: got %d (%s), want phone=1: other shapes keep their ranges", n, describe(&c))
	}
	if _, err := New([]pii.Category{"name"}, nil); err == nil {
		t.Error("New accepted an unknown built-in category")
	}
}

func TestCustom(t *testing.T) {
	s, err := New(pii.Detectable(), []Custom{
		{Name: "uk_nino", Category: pii.NationalID, Pattern: `\b[A-CEGHJ-PR-TW-Z]{2}\d{6}[A-D]\b`},
		{Name: "employee_id", Category: "custom:employee_id", Pattern: `EMP-\d{6}`},
		{Name: "digits", Category: "custom:digits", Pattern: `\d{3}-\d{2}-\d{4}`},
		{Name: "maybe_empty", Category: "custom:empty", Pattern: `x*`},
	})
	if err != nil {
		t.Fatal(err)
	}
	var c Counts
	in := "AB123456C,EMP-000001;EMP-000002 EMP-000003 078-05-1120 ann@x.com"
	n := s.Scan([]byte(in), &c)
	want := map[pii.Category]int{pii.NationalID: 2, "custom:employee_id": 3, pii.Email: 1}
	total := 0
	for cat, w := range want {
		total += w
		if got := c.Get(cat); got != w {
			t.Errorf("%s: got %d, want %d (all: %s)", cat, got, w, describe(&c))
		}
	}
	if n != total || c.Total() != total {
		t.Errorf("got n=%d total=%d (%s), want %d: the SSN must not count again as custom:digits", n, c.Total(), describe(&c), total)
	}

	c.Reset()
	s.Scan([]byte("EMP-123456"), &c)
	if c.Get("custom:employee_id") != 1 || c.Total() != 1 {
		t.Errorf("after Reset: got %s, want custom:employee_id=1", describe(&c))
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name   string
		custom Custom
		want   string
	}{
		{"bad pattern", Custom{Name: "broken", Category: "custom:x", Pattern: `a(b`}, `"broken": bad pattern "a(b"`},
		{"no name", Custom{Category: "custom:x", Pattern: `a`}, "no name"},
		{"no category", Custom{Name: "n", Pattern: `a`}, "no category"},
		{"empty pattern", Custom{Name: "n", Category: "custom:x"}, "empty pattern"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(nil, []Custom{tc.custom})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestCounts(t *testing.T) {
	var c Counts
	if c.Total() != 0 || c.Get(pii.Email) != 0 || c.Get("custom:x") != 0 {
		t.Fatal("zero Counts is not empty")
	}
	c.Add(pii.Email, 2)
	c.Add("custom:x", 3)
	c.Add(pii.Phone, 1)
	c.Add("custom:x", 1)
	if c.Get(pii.Email) != 2 || c.Get(pii.Phone) != 1 || c.Get("custom:x") != 4 || c.Total() != 7 {
		t.Errorf("got %s total %d", describe(&c), c.Total())
	}
	if got := describe(&c); got != "email=2 phone=1 custom:x=4" {
		t.Errorf("Each order: got %q", got)
	}
	c.Reset()
	if c.Total() != 0 || describe(&c) != "" {
		t.Errorf("after Reset: got %s", describe(&c))
	}
}

func TestScanDoesNotAllocate(t *testing.T) {
	row := []byte(`{"id":7,"email":"ann@x.com","phone":"(415) 555-0101","card":"4111 1111 1111 1111","iban":"DE89370400440532013000","ip":"fe80::1"}`)
	var c Counts
	s := Default()
	if a := testing.AllocsPerRun(100, func() { s.Scan(row, &c) }); a != 0 {
		t.Errorf("Scan allocated %.1f times per call", a)
	}
}
