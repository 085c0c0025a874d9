package protofuzz

import (
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Source is the randomness a generator draws from: a seeded PRNG for the
// random runs, or the bytes of a fuzz input.
type Source interface {
	// Intn returns a number in [0, n); n > 0.
	Intn(n int) int
}

// NewRand returns a Source seeded with seed.
func NewRand(seed uint64) Source {
	return randSource{rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

type randSource struct{ r *rand.Rand }

func (s randSource) Intn(n int) int { return s.r.IntN(n) }

// ByteSource draws from b one byte per choice, so that a fuzzer's input
// bytes drive the generator; once b is used up, it goes on with a PRNG
// seeded by b's length (not zeros, which would cut every frame).
func ByteSource(b []byte) Source { return &byteSource{b: b, rest: NewRand(uint64(len(b)))} }

type byteSource struct {
	b    []byte
	rest Source
}

func (s *byteSource) Intn(n int) int {
	if len(s.b) == 0 {
		return s.rest.Intn(n)
	}
	v := int(s.b[0])
	s.b = s.b[1:]
	if n > 256 {
		v = v*256 + s.Intn(256)
	}
	return v % n
}

// Cut is a pause in sending: the bytes before it are written and the
// client waits before writing the rest. Offset 0 cuts before message
// Before; a larger offset cuts inside its frame.
type Cut struct {
	Before int
	Offset int
}

// Sequence is what a run sends, before the trailer: messages, written in
// one write or in chunks.
type Sequence struct {
	Msgs []pgproto3.FrontendMessage
	Cuts []Cut
	// Settle holds the trailer back until the replies to Msgs have come,
	// counted in ReadyForQuery messages: a proxy that loses one hangs.
	Settle bool
}

// statement is an SQL text the generator uses, with the number of
// parameters it takes.
type statement struct {
	sql    string
	params int
}

// statements are the texts of Parse messages. Some fail at Parse
// (syntax, unknown relation, several commands), some at Execute.
var statements = []statement{
	{"select 1", 0},
	{"select $1::int + 1", 1},
	{"select id, email from pf_people where id <= 3", 0},
	{"select email, full_name from pf_people where id <= $1::int", 1},
	{"select g from generate_series(1, 4) g", 0},
	{"insert into t values (7, 'x@example.com')", 0},
	{"insert into t values ($1::int, 'p@example.com') returning id", 1},
	{"select count(*) from t", 0},
	{"select 1/0", 0},
	{"selec 1", 0},
	{"select * from pf_missing", 0},
	{"copy t from stdin", 0},
	{"copy t to stdout", 0},
	{"copy (select id, email from pf_people where id <= 3) to stdout", 0},
	{"begin", 0},
	{"commit", 0},
	{"rollback", 0},
	{"", 0},
	{"select 1; select 2", 0},
	{"savepoint sp", 0},
	{"rollback to savepoint sp", 0},
	{"select g, 'person' || g || '@example.com' from generate_series(1, 3000) g", 0},
	{"copy (select g from generate_series(1, 2000) g) to stdout", 0},
	{"set search_path = ''", 0},
	{"reset search_path", 0},
}

// queries are the texts of simple Query messages, besides the
// parameterless statements.
var queries = []string{
	"select 2",
	"select 1; select 2",
	"select 1; selec 2",
	"begin; select 1/0; commit",
	"insert into t values (1, 'q@example.com'); select count(*) from t",
	"copy t from stdin; select 3",
	"copy t to stdout; select 4",
	"select email from pf_people where id <= 5",
	";",
	"listen pf_channel; notify pf_channel, 'x'",
	"do $$ begin raise notice 'pf notice'; end $$",
	"copy (select g from generate_series(1, 2000) g) to stdout",
	"set search_path = ''; select id, email from pf_people",
	"copy t from stdin; copy t from stdin",
	"select g from generate_series(1, 3000) g; select 1",
	"begin; select g from generate_series(1, 3000) g",
	"copy t to stdout; copy t from stdin",
	bulkQuery,
}

var (
	stmtNames   = []string{"", "s1", "s2", "s9"}
	portalNames = []string{"", "p1", "p2", "p9"}
	copyLines   = []string{"1\tc1@example.com\n", "2\tc2@example.com\n", "bad\n", "3\t", bulkCopy}
)

// bulkCopy is one CopyData of 3000 rows (about 60 kB), and bulkQuery a
// Query of about 100 kB: frames larger than a read buffer.
var (
	bulkCopy  = strings.Repeat("4\tbulk@example.com\n", 3000)
	bulkQuery = "select length('" + strings.Repeat("x", 100_000) + "')"
)

// gen builds a sequence, remembering the parameter count of each
// statement name it parsed so that most Binds are right.
type gen struct {
	src    Source
	params map[string]int
	msgs   []pgproto3.FrontendMessage
}

func (g *gen) pick(n int) int    { return g.src.Intn(n) }
func (g *gen) chance(p int) bool { return g.pick(100) < p }

func (g *gen) add(m ...pgproto3.FrontendMessage) { g.msgs = append(g.msgs, m...) }

// Generate returns a random sequence of at most maxAtoms steps, each one
// message or a short group that makes sense together (Parse, Bind,
// Execute; a COPY and its data), in random order, cut into chunks or not.
func Generate(src Source, maxAtoms int) Sequence {
	g := &gen{src: src, params: map[string]int{}}
	n := 1 + g.pick(maxAtoms)
	for range n {
		if g.chance(40) {
			g.group()
		} else {
			g.single()
		}
	}
	seq := Sequence{Msgs: g.msgs, Settle: g.chance(50)}
	if g.chance(40) {
		for i := 1; i < len(seq.Msgs); i++ {
			if g.chance(30) {
				c := Cut{Before: i}
				if g.chance(30) {
					c.Offset = 1 + g.pick(5)
				}
				seq.Cuts = append(seq.Cuts, c)
			}
		}
	}
	return seq
}

func (g *gen) group() {
	switch g.pick(4) {
	case 0, 1:
		st := statements[g.pick(len(statements))]
		name := stmtNames[g.pick(3)]
		portal := portalNames[g.pick(3)]
		g.parse(name, st)
		g.add(g.bind(portal, name))
		if g.chance(30) {
			g.add(&pgproto3.Describe{ObjectType: 'P', Name: portal})
		}
		g.add(g.execute(portal))
		if strings.Contains(st.sql, "from stdin") {
			g.copyData()
		}
		if g.chance(60) {
			g.add(&pgproto3.Sync{})
		}
	case 2:
		g.add(&pgproto3.Query{String: "copy t from stdin"})
		g.copyData()
	case 3:
		g.parse("", statement{"copy t from stdin", 0})
		g.add(g.bind("", ""), g.execute(""))
		g.copyData()
		g.add(&pgproto3.Sync{})
	}
}

func (g *gen) copyData() {
	for range g.pick(4) {
		g.add(&pgproto3.CopyData{Data: []byte(copyLines[g.pick(len(copyLines))])})
	}
	switch {
	case g.chance(10):
		// A Sync or a Flush in COPY IN: ignored by the server.
		g.add([]pgproto3.FrontendMessage{&pgproto3.Sync{}, &pgproto3.Flush{}}[g.pick(2)])
		g.add(&pgproto3.CopyDone{})
	case g.chance(85):
		g.add(&pgproto3.CopyDone{})
	default:
		g.add(&pgproto3.CopyFail{Message: "pf abort"})
	}
}

func (g *gen) parse(name string, st statement) {
	g.params[name] = st.params
	g.add(&pgproto3.Parse{Name: name, Query: st.sql})
}

func (g *gen) bind(portal, name string) *pgproto3.Bind {
	n, ok := g.params[name]
	if !ok || g.chance(10) {
		n = g.pick(3)
	}
	b := &pgproto3.Bind{DestinationPortal: portal, PreparedStatement: name}
	for range n {
		v := "3"
		if g.chance(10) {
			v = "abc"
		}
		b.Parameters = append(b.Parameters, []byte(v))
	}
	return b
}

func (g *gen) execute(portal string) *pgproto3.Execute {
	e := &pgproto3.Execute{Portal: portal}
	if g.chance(20) {
		e.MaxRows = uint32(1 + g.pick(2))
	}
	return e
}

func (g *gen) single() {
	switch g.pick(16) {
	case 0:
		g.parse(stmtNames[g.pick(len(stmtNames))], statements[g.pick(len(statements))])
	case 1:
		g.add(g.bind(portalNames[g.pick(len(portalNames))], stmtNames[g.pick(len(stmtNames))]))
	case 2:
		g.add(&pgproto3.Describe{ObjectType: 'S', Name: stmtNames[g.pick(len(stmtNames))]})
	case 3:
		g.add(&pgproto3.Describe{ObjectType: 'P', Name: portalNames[g.pick(len(portalNames))]})
	case 4:
		g.add(g.execute(portalNames[g.pick(len(portalNames))]))
	case 5:
		if g.chance(50) {
			g.add(&pgproto3.Close{ObjectType: 'S', Name: stmtNames[g.pick(len(stmtNames))]})
		} else {
			g.add(&pgproto3.Close{ObjectType: 'P', Name: portalNames[g.pick(len(portalNames))]})
		}
	case 6, 7:
		g.add(&pgproto3.Sync{})
	case 8:
		g.add(&pgproto3.Flush{})
	case 9, 10:
		var q string
		if i := g.pick(len(queries) + len(statements)); i < len(queries) {
			q = queries[i]
		} else if st := statements[i-len(queries)]; st.params == 0 {
			q = st.sql
		} else {
			q = "select 5"
		}
		g.add(&pgproto3.Query{String: q})
	case 11:
		g.add(&pgproto3.CopyData{Data: []byte(copyLines[g.pick(len(copyLines))])})
	case 12:
		g.add(&pgproto3.CopyDone{})
	case 13:
		g.add(&pgproto3.CopyFail{Message: "pf abort"})
	case 14:
		// int4pl(1, 2), or an OID that is no function.
		fn := uint32(177)
		if g.chance(30) {
			fn = 1
		}
		g.add(&pgproto3.FunctionCall{Function: fn, ArgFormatCodes: []uint16{0},
			Arguments: [][]byte{[]byte("1"), []byte("2")}})
	case 15:
		if g.chance(20) {
			g.add(&pgproto3.Terminate{})
		} else {
			g.add(&pgproto3.Flush{})
		}
	}
}

// Trailer is what every run sends after the sequence so that its complete
// answer is known: it ends any COPY IN (CopyFail is ignored outside
// COPY), any skipping to a Sync, any transaction, then asks for a marker
// row. The run is over when the marker's ReadyForQuery arrives.
func Trailer() []pgproto3.FrontendMessage {
	return []pgproto3.FrontendMessage{
		&pgproto3.CopyFail{Message: "pf end"},
		&pgproto3.Sync{},
		&pgproto3.Query{String: "rollback; select '" + endMarker + "'"},
	}
}

// endMarker is the value of the trailer's marker row.
const endMarker = "pf_end"

// errorTwins map the texts of the generator's results larger than
// BlockRows to twins that fail with 22012 on row BlockRows+1: PostgreSQL
// answers the twin as pgwarden must answer a block of the original
// (rows up to the limit, an error, the batch failed), but for the
// SQLSTATE.
var errorTwins = []struct{ from, to string }{
	{"select g, 'person' || g || '@example.com' from generate_series(1, 3000) g",
		"select (g + 0/(1001-g)) as g, 'person' || g || '@example.com' from generate_series(1, 3000) g"},
	{"select g from generate_series(1, 3000) g", "select (g + 0/(1001-g)) as g from generate_series(1, 3000) g"},
	{"copy (select g from generate_series(1, 2000) g) to stdout", "copy (select g + 0/(1001-g) from generate_series(1, 2000) g) to stdout"},
	// t passes the limit after a bulk COPY into it.
	{"copy t to stdout", "copy (select id + 0/(1001 - row_number() over ())::int, email from t) to stdout"},
}

// ErrorTwin returns seq with each large result's statement replaced by
// its twin that fails where a row limit of BlockRows blocks it, and
// whether anything was replaced.
func ErrorTwin(seq Sequence) (Sequence, bool) {
	twin := func(s string) string {
		for _, t := range errorTwins {
			s = strings.ReplaceAll(s, t.from, t.to)
		}
		return s
	}
	out := Sequence{Msgs: slices.Clone(seq.Msgs), Cuts: seq.Cuts, Settle: seq.Settle}
	changed := false
	for i, m := range out.Msgs {
		switch m := m.(type) {
		case *pgproto3.Parse:
			if t := twin(m.Query); t != m.Query {
				c := *m
				c.Query, out.Msgs[i], changed = t, &c, true
			}
		case *pgproto3.Query:
			if t := twin(m.String); t != m.String {
				out.Msgs[i], changed = &pgproto3.Query{String: t}, true
			}
		}
	}
	return out, changed
}
