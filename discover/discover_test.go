package discover

import (
	"fmt"
	"net/url"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/pii"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// discoverSchema creates the schema disc_test with a customers table, a
// table and column whose names need quoting, a view, a large table and a
// table only the superuser may read, and a materialized view that cannot be
// read because it was never refreshed.
const discoverSchema = `
DROP SCHEMA IF EXISTS disc_test CASCADE;
CREATE SCHEMA disc_test;
CREATE TABLE disc_test.customers (
	id int PRIMARY KEY,
	email text,
	phone varchar(32),
	full_name text,
	notes text,
	order_id int,
	order_code text,
	dob date,
	settings jsonb
);
INSERT INTO disc_test.customers
SELECT i,
	'user' || i || '@example.com',
	'+1-415-555-' || lpad(i::text, 4, '0'),
	'Person ' || i,
	CASE WHEN i % 5 = 0 THEN 'call back, reach me at user' || i || '@example.org' ELSE 'prefers mornings' END,
	1000000 + i,
	(4000000000 + i)::text,
	date '1980-01-01' + i,
	CASE WHEN i % 2 = 0 THEN jsonb_build_object('contact', 'u' || i || '@example.net') END
FROM generate_series(1, 200) i;
CREATE TABLE disc_test."Mixed.Case" ("E-Mail" text, label text);
INSERT INTO disc_test."Mixed.Case" SELECT 'm' || i || '@example.com', 'x' FROM generate_series(1, 10) i;
CREATE VIEW disc_test.v_contacts AS SELECT id, lower(email) AS contact FROM disc_test.customers;
CREATE TABLE disc_test.big (payload text);
INSERT INTO disc_test.big SELECT 'b' || i || '@example.com' FROM generate_series(1, 20000) i;
ANALYZE disc_test.big;
CREATE MATERIALIZED VIEW disc_test.mv_unfilled AS SELECT email FROM disc_test.customers WITH NO DATA;
CREATE TABLE disc_test.secret (remark text);
INSERT INTO disc_test.secret VALUES ('123-45-6789');
GRANT USAGE ON SCHEMA disc_test TO pgw_plain;
GRANT SELECT ON disc_test.customers TO pgw_plain;
`

// scan runs discovery on dsn with cfg and returns the report, the policy it
// writes and the lines logged.
func scan(t *testing.T, dsn string, cfg Config) (rep *Report, stdout, stderr string) {
	t.Helper()
	var err error
	if cfg.Conn, err = pgx.ParseConfig(dsn); err != nil {
		t.Fatal(err)
	}
	var log, out strings.Builder
	cfg.Logf = func(format string, args ...any) { fmt.Fprintf(&log, format+"\n", args...) }
	rep, err = Run(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Run: %v, log:\n%s", err, log.String())
	}
	if err := rep.WritePolicy(&out); err != nil {
		t.Fatal(err)
	}
	return rep, out.String(), log.String()
}

func TestProposesPolicy(t *testing.T) {
	c := pgtest.Shared(t)
	c.Exec(t, discoverSchema)

	rep, stdout, stderr := scan(t, c.DSN(pgtest.SuperUser), Config{Schemas: []string{"disc_test"}, Sample: 100})
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	p, err := policy.Parse("discover", []byte(stdout))
	if err != nil {
		t.Fatalf("policy.Parse of the output: %v\n%s", err, stdout)
	}
	want := map[[2]string]pii.Category{
		{"customers", "email"}:      pii.Email,
		{"mv_unfilled", "email"}:    pii.Email, // by name, its values unreadable
		{"customers", "phone"}:      pii.Phone,
		{"customers", "full_name"}:  pii.Name, // by name only
		{"customers", "dob"}:        pii.DateOfBirth,
		{"customers", "notes"}:      "", // 20% emails, below --min-share
		{"customers", "order_id"}:   "",
		{"customers", "order_code"}: "", // bare digit ids are not phones
		{"customers", "settings"}:   pii.Email,
		{"customers", "id"}:         "",
		{"Mixed.Case", "E-Mail"}:    pii.Email,
		{"Mixed.Case", "label"}:     "",
		{"v_contacts", "contact"}:   pii.Email,
		{"big", "payload"}:          pii.Email,
		{"secret", "remark"}:        pii.NationalID,
	}
	for col, cat := range want {
		got, _ := p.Classify("disc_test", col[0], col[1])
		if got != cat {
			t.Errorf("disc_test.%s.%s: category %q, want %q", col[0], col[1], got, cat)
		}
	}
	for _, line := range []string{
		"    # 100/100 sampled values look like email; name matches email\n    - match: disc_test.customers.email\n",
		"    # 0/100 sampled values match a detector; name only: name matches name\n    - match: disc_test.customers.full_name\n",
		"    # not sampled (type date); name only: name matches date_of_birth\n",
		"    # not sampled (relation skipped); name only: name matches email\n    - match: disc_test.mv_unfilled.email\n",
	} {
		if !strings.Contains(stdout, line) {
			t.Errorf("output lacks %q:\n%s", line, stdout)
		}
	}
	if !strings.Contains(stdout, `- match: 'disc_test."Mixed.Case"."E-Mail"'`) {
		t.Errorf("odd names not quoted as expected:\n%s", stdout)
	}
	if !strings.Contains(stdout, "#   disc_test.customers.notes: 20/100 sampled values look like email") {
		t.Errorf("notes missing from the not-proposed comments:\n%s", stdout)
	}
	// The large table is sampled, never read whole.
	if !strings.Contains(stdout, "/100 sampled values look like email\n    - match: disc_test.big.payload") {
		t.Errorf("big table not sampled to --sample rows:\n%s", stdout)
	}
	if w := `skipping "disc_test"."mv_unfilled": materialized view "mv_unfilled" has not been populated`; !strings.Contains(stderr, w) {
		t.Errorf("log lacks %q:\n%s", w, stderr)
	}
	if rep.Scanned != 5 || rep.Skipped != 1 || rep.Proposed() != 10 {
		t.Errorf("scanned %d, skipped %d, proposed %d; want 5, 1, 10", rep.Scanned, rep.Skipped, rep.Proposed())
	}
}

// TestSkipsUnreadable runs as a role that may read only customers,
// with its password from PGPASSWORD: the other relations are skipped with a
// warning and the run succeeds.
func TestSkipsUnreadable(t *testing.T) {
	c := pgtest.Shared(t)
	c.Exec(t, discoverSchema)
	u, err := url.Parse(c.DSN(pgtest.PlainUser))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(pgtest.PlainUser)
	t.Setenv("PGPASSWORD", pgtest.Password)

	rep, stdout, stderr := scan(t, u.String(), Config{Schemas: []string{"disc_test", "disc_none"}})
	for _, w := range []string{`skipping "disc_test"."secret": permission denied`, `no tables or views in schema "disc_none"`} {
		if !strings.Contains(stderr, w) {
			t.Errorf("log lacks %q:\n%s", w, stderr)
		}
	}
	if rep.Skipped != 5 {
		t.Errorf("skipped %d relations, want 5", rep.Skipped)
	}
	p, err := policy.Parse("discover", []byte(stdout))
	if err != nil {
		t.Fatalf("policy.Parse of the output: %v\n%s", err, stdout)
	}
	if got, _ := p.Classify("disc_test", "customers", "email"); got != pii.Email {
		t.Errorf("customers.email: %q, want email", got)
	}
	// An unreadable column is proposed only when its name suggests PII.
	if got, _ := p.Classify("disc_test", "secret", "remark"); got != "" {
		t.Errorf("secret.remark proposed as %q without being read", got)
	}
}

func TestRunRejectsConfig(t *testing.T) {
	cc, err := pgx.ParseConfig("postgres://u@127.0.0.1:1/db")
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []Config{
		{},
		{Conn: cc, Sample: -1},
		{Conn: cc, MinShare: 1.5},
		{Conn: cc, MinShare: -0.1},
	} {
		if _, err := Run(t.Context(), cfg); err == nil || strings.Contains(err.Error(), "connect") {
			t.Errorf("Run(sample %d, min share %g, conn %v) = %v, want a configuration error before connecting",
				cfg.Sample, cfg.MinShare, cfg.Conn != nil, err)
		}
	}
}

func TestNameCategory(t *testing.T) {
	tests := map[string]pii.Category{
		"email":              pii.Email,
		"E_Mail":             pii.Email,
		"billingEMail2":      pii.Email,
		"email_address":      pii.Email,
		"client_ip":          pii.IP,
		"ip_address":         pii.IP,
		"mobile":             pii.Phone,
		"SSN":                pii.NationalID,
		"social_security_no": pii.NationalID,
		"cc_number":          pii.Card,
		"iban":               pii.IBAN,
		"name":               pii.Name,
		"lastName":           pii.Name,
		"product_name":       "",
		"street":             pii.Address,
		"postal_code":        pii.Address,
		"date_of_birth":      pii.DateOfBirth,
		"hotel":              "",
		"order_id":           "",
	}
	for name, want := range tests {
		if got := nameCategory(name); got != want {
			t.Errorf("nameCategory(%q) = %q, want %q (words %q)", name, got, want, nameWords(name))
		}
	}
}

func TestMatchString(t *testing.T) {
	tests := []struct{ schema, table, column, want string }{
		{"public", "customers", "email", "public.customers.email"},
		{"My.Schema", "t", "c", `"My.Schema".t.c`},
		{"s", `we"ird*`, "a b", `s."we""ird*"."a b"`},
		{"s", "it's", "tab\there", `s."it's"."tab` + "\t" + `here"`},
	}
	for _, tt := range tests {
		got := matchString(tt.schema, tt.table, tt.column)
		if got != tt.want {
			t.Errorf("matchString(%q, %q, %q) = %s, want %s", tt.schema, tt.table, tt.column, got, tt.want)
		}
		doc := "version: 1\npii:\n  columns:\n    - match: " + yamlScalar(got) + "\n      category: email\n"
		p, err := policy.Parse("t", []byte(doc))
		if err != nil {
			t.Errorf("%s: %v", doc, err)
			continue
		}
		if cat, _ := p.Classify(tt.schema, tt.table, tt.column); !reflect.DeepEqual(cat, pii.Email) {
			t.Errorf("%s does not classify %q.%q.%q", doc, tt.schema, tt.table, tt.column)
		}
	}
}

func TestSampleQuery(t *testing.T) {
	exprs := []string{"left(\"e\"::text, 65536)"}
	tests := []struct {
		rel     relation
		sampled bool
		want    string
	}{
		{relation{schema: "s", name: "small", kind: 'r', reltuples: 5000}, false,
			`SELECT left("e"::text, 65536) FROM "s"."small" LIMIT 1000`},
		{relation{schema: "s", name: "big", kind: 'r', reltuples: 1e6}, true,
			`SELECT left("e"::text, 65536) FROM "s"."big" TABLESAMPLE SYSTEM (0.3) REPEATABLE (0) LIMIT 1000`},
		{relation{schema: "s", name: "mv", kind: 'm', reltuples: 1e5}, true,
			`SELECT left("e"::text, 65536) FROM "s"."mv" TABLESAMPLE SYSTEM (3) REPEATABLE (0) LIMIT 1000`},
		{relation{schema: "s", name: "view", kind: 'v', reltuples: 1e6}, false,
			`SELECT left("e"::text, 65536) FROM "s"."view" LIMIT 1000`},
	}
	for _, tt := range tests {
		got, sampled := sampleQuery(&tt.rel, exprs, 1000)
		if got != tt.want || sampled != tt.sampled {
			t.Errorf("sampleQuery(%s) = %q, %v; want %q, %v", tt.rel.name, got, sampled, tt.want, tt.sampled)
		}
	}
}
