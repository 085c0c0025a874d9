package guard_test

import (
	"context"
	"crypto/md5"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/audit"
	"github.com/pgwarden/pgwarden/guard"
	"github.com/pgwarden/pgwarden/identity/tag"
	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/proxy/catalog"
)

// fakeCatalog resolves table OID 1000's columns by attribute number.
type fakeCatalog struct{ cols []string }

func (f fakeCatalog) Column(_ context.Context, oid uint32, att int16) (catalog.Column, error) {
	if oid != 1000 || int(att) < 1 || int(att) > len(f.cols) {
		return catalog.Column{}, catalog.ErrNotFound
	}
	return catalog.Column{Schema: "public", Table: "people", Name: f.cols[att-1], RelKind: 'r'}, nil
}
func (fakeCatalog) ViewDefinition(context.Context, uint32) (string, error) {
	return "", catalog.ErrNotFound
}
func (fakeCatalog) Functions(context.Context, string, string) ([]catalog.Function, error) {
	return nil, nil
}

var publicOnly = []string{"public"}

func (fakeCatalog) RelationSchemas(context.Context, string) ([]string, error) { return publicOnly, nil }

// CachedRelationSchemas answers as proxy/catalog's cache does once warm.
func (fakeCatalog) CachedRelationSchemas(string) ([]string, bool) { return publicOnly, true }
func (fakeCatalog) RoleSearchPath(context.Context, string, string) (string, bool, error) {
	return "", false, nil
}
func (fakeCatalog) RoleMemberships(context.Context, string, []string) ([]string, error) {
	return nil, nil
}
func (fakeCatalog) ExplainedKeys(context.Context, string, string) ([]string, error) { return nil, nil }
func (fakeCatalog) Estimate(context.Context, string, []string, string, *proxy.Params) (int64, error) {
	return 0, catalog.ErrNoEstimate
}

const benchDeclared = `version: 1
pii:
  columns:
    - {match: public.people.full_name, category: name}
    - {match: public.people.email, category: email}
    - {match: public.people.phone, category: phone}
    - {match: public.people.ssn, category: national_id}
    - {match: public.people.address, category: address}
  detectors:
    enabled: %v
`

const benchRules = `rules:
  - {name: statement-alert, when: {pii_values: 1000000000000}, action: alert}
  - {name: statement-block, when: {pii_values: 1000000000000}, action: block}
  - {name: session-alert, scope: session, when: {pii_values: 1000000000000}, action: alert}
  - {name: daily-alert, scope: 24h, when: {pii_values: 1000000000000}, action: alert}
  - {name: email-block, scope: 24h, when: {pii_values: {email: 1000000000000}}, action: block}
`

// BenchmarkDataRow is the guard's cost per row of synthetic people, with
// the columns declared or scanned by the detectors, with and without five
// threshold rules in force.
func BenchmarkDataRow(b *testing.B) {
	cols := []string{"id", "full_name", "email", "phone", "ssn", "address"}
	row := [][]byte{[]byte("123456"), []byte("Maria Garcia"), []byte("maria.garcia123456@example.com"),
		[]byte("+1 415 555 3456"), []byte("223-45-6789"), []byte("1234 Oak Street, Apt 12, Springfield, IL 62123")}
	fields := make([]pgproto3.FieldDescription, len(cols))
	for i, c := range cols {
		fields[i] = pgproto3.FieldDescription{Name: []byte(c), TableOID: 1000, TableAttributeNumber: uint16(i + 1), DataTypeOID: 25}
	}
	for _, declared := range []bool{true, false} {
		for _, rules := range []bool{false, true} {
			name := fmt.Sprintf("declared=%v/rules=%v", declared, rules)
			b.Run(name, func(b *testing.B) {
				text := fmt.Sprintf(benchDeclared, !declared)
				if !declared {
					text = "version: 1\n"
				}
				if rules {
					text += benchRules
				}
				p, err := policy.Parse("bench.yaml", []byte(text))
				if err != nil {
					b.Fatal(err)
				}
				g, err := guard.New(guard.Config{Policy: p, Catalog: fakeCatalog{cols}})
				if err != nil {
					b.Fatal(err)
				}
				si, err := g.StartSession(context.Background(), &proxy.SessionInfo{ID: "bench", User: "alice"})
				if err != nil {
					b.Fatal(err)
				}
				st := &proxy.Statement{Seq: 1, Kind: proxy.SimpleQuery, SQL: "SELECT * FROM people"}
				si.Statement(st)
				si.RowDescription(st, fields)
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if v := si.DataRow(st, row); v.Action != proxy.Continue {
						b.Fatal(v.Reason)
					}
				}
			})
		}
	}
}

// BenchmarkDataRowHex is the guard's cost per row of test/bench's -data
// hex rows (an int in binary, as pgx asks for it, and 140 characters of
// md5 hex) with every detector on and the five rules in force: text that
// looks encoded, is decoded as far as its first bytes, and holds no PII.
func BenchmarkDataRowHex(b *testing.B) {
	p, err := policy.Parse("bench.yaml", []byte("version: 1\n"+benchRules))
	if err != nil {
		b.Fatal(err)
	}
	g, err := guard.New(guard.Config{Policy: p, Catalog: fakeCatalog{[]string{"id", "a"}}, MaxRowsPerStatement: 1 << 40})
	if err != nil {
		b.Fatal(err)
	}
	si, err := g.StartSession(context.Background(), &proxy.SessionInfo{ID: "bench", User: "alice"})
	if err != nil {
		b.Fatal(err)
	}
	st := &proxy.Statement{Seq: 1, Kind: proxy.ExtendedExecute, SQL: "SELECT id, a FROM people"}
	si.Statement(st)
	si.RowDescription(st, []pgproto3.FieldDescription{
		{Name: []byte("id"), TableOID: 1000, TableAttributeNumber: 1, DataTypeOID: 23, Format: 1},
		{Name: []byte("a"), TableOID: 1000, TableAttributeNumber: 2, DataTypeOID: 25},
	})
	rows := make([][][]byte, 1000)
	for k := range rows {
		h := fmt.Sprintf("%x", md5.Sum([]byte(strconv.Itoa(k+1))))
		rows[k] = [][]byte{binary.BigEndian.AppendUint32(nil, uint32(k+1)), []byte(strings.Repeat(h, 5)[:140])}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if v := si.DataRow(st, rows[i%len(rows)]); v.Action != proxy.Continue {
			b.Fatal(v.Reason)
		}
	}
}

// BenchmarkStatementIdentity is the guard's cost per statement without
// rows (Statement, CommandComplete, ReadyForQuery): an ordinary session, a
// service account's untagged statement, and one whose tag the guard finds
// and verifies.
func BenchmarkStatementIdentity(b *testing.B) {
	key := []byte("0123456789abcdef0123456789abcdef")
	at := time.Unix(1767225600, 0)
	const sql = "SELECT id, full_name, email FROM people WHERE id = $1 AND status = 'open'"
	p, err := policy.Parse("bench.yaml", []byte(fmt.Sprintf(benchDeclared, true)+benchRules+
		"service_accounts: [{role: svc, key_env: SVC_KEY}]\n"))
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct{ name, user, sql string }{
		{"ordinary", "alice", sql},
		{"service/untagged", "svc", sql},
		{"service/tagged", "svc", tag.Sign(key, "alice", 0, at, sql)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			g, err := guard.New(guard.Config{Policy: p, Catalog: fakeCatalog{}, ServiceKeys: map[string][]byte{"svc": key},
				Now: func() time.Time { return at }})
			if err != nil {
				b.Fatal(err)
			}
			si, err := g.StartSession(context.Background(), &proxy.SessionInfo{ID: "bench", User: bc.user})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			var seq uint64
			for b.Loop() {
				seq++
				st := &proxy.Statement{Seq: seq, Kind: proxy.SimpleQuery, SQL: bc.sql}
				if v := si.Statement(st); v.Action != proxy.Continue {
					b.Fatal(v.Reason)
				}
				si.CommandComplete(st, []byte("SELECT 0"))
				si.ReadyForQuery('I')
			}
		})
	}
}

// BenchmarkStatementAudit is the guard's cost per statement without rows
// with a file audit log under each sync policy, failing closed (the
// default) and open.
func BenchmarkStatementAudit(b *testing.B) {
	const sql = "UPDATE people SET status = 'closed' WHERE id = 42"
	p, err := policy.Parse("bench.yaml", []byte(fmt.Sprintf(benchDeclared, true)))
	if err != nil {
		b.Fatal(err)
	}
	for _, sync := range []audit.SyncPolicy{audit.SyncAlways, audit.SyncInterval} {
		for _, failOpen := range []bool{false, true} {
			b.Run(fmt.Sprintf("sync=%v/fail_open=%v", sync, failOpen), func(b *testing.B) {
				al, err := audit.Open(audit.Config{Dir: b.TempDir(), Key: []byte("0123456789abcdef"), Sync: sync,
					Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
				if err != nil {
					b.Fatal(err)
				}
				defer al.Close()
				g, err := guard.New(guard.Config{Policy: p, Catalog: fakeCatalog{}, Audit: al, AuditFailOpen: failOpen,
					Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
				if err != nil {
					b.Fatal(err)
				}
				si, err := g.StartSession(context.Background(), &proxy.SessionInfo{ID: "bench", User: "alice"})
				if err != nil {
					b.Fatal(err)
				}
				before := al.Stats()
				b.ReportAllocs()
				var seq uint64
				for b.Loop() {
					seq++
					st := &proxy.Statement{Seq: seq, Kind: proxy.SimpleQuery, SQL: sql}
					if v := si.Statement(st); v.Action != proxy.Continue {
						b.Fatal(v.Reason)
					}
					si.CommandComplete(st, []byte("UPDATE 1"))
					if v := si.ReadyForQuery('I'); v.Action != proxy.Continue {
						b.Fatal(v.Reason)
					}
				}
				st := al.Stats()
				b.ReportMetric(float64(st.Lines-before.Lines)/float64(b.N), "lines/op")
				b.ReportMetric(float64(st.Syncs-before.Syncs)/float64(b.N), "fsyncs/op")
			})
		}
	}
}

// TestStatementAllocations holds the allocations of a statement without
// rows (the proxy's Statement, then the guard's Statement,
// CommandComplete and ReadyForQuery, with detectors and five rules) to
// their count when the statement path was last cut down (19 before it):
// a change that adds one on every statement fails here.
func TestStatementAllocations(t *testing.T) {
	const budget = 16
	p, err := policy.Parse("bench.yaml", []byte(fmt.Sprintf(benchDeclared, true)+benchRules))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1767225600, 0)
	g, err := guard.New(guard.Config{Policy: p, Catalog: fakeCatalog{}, Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	si, err := g.StartSession(context.Background(), &proxy.SessionInfo{ID: "allocs", User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	var texts []string // one shape, literals that differ, as pgbench's
	for i := range 7 {
		texts = append(texts, fmt.Sprintf("SELECT id, full_name, email FROM people WHERE id = %d AND status = 'open'", i))
	}
	var seq uint64
	run := func() {
		seq++
		st := &proxy.Statement{Seq: seq, Kind: proxy.SimpleQuery, SQL: texts[seq%7]}
		if v := si.Statement(st); v.Action != proxy.Continue {
			t.Fatal(v.Reason)
		}
		si.CommandComplete(st, []byte("SELECT 0"))
		si.ReadyForQuery('I')
	}
	for range 10 { // the caches warm
		run()
	}
	if n := testing.AllocsPerRun(500, run); n > budget {
		t.Errorf("%v allocations a statement, want at most %d", n, budget)
	}
}
