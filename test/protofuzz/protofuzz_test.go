package protofuzz_test

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/protofuzz"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// knownEnv, set to 1, runs the known divergences too.
const knownEnv = "PROTOFUZZ_KNOWN"

// logEnv, set to 1, sends the proxies' debug logs to stderr.
const logEnv = "PROTOFUZZ_LOG"

// knownDivergences are the regression cases pgwarden still fails, by
// name, with the reason: they are skipped unless PROTOFUZZ_KNOWN=1. A case
// leaves this list when the relay is fixed. Random sequences whose
// divergence is of the family of one of them (knownFamilies) are logged
// rather than failed, as long as it is listed here.
var knownDivergences = map[string]string{}

// knownFamilies name, for each case of knownDivergences, the family of
// random divergences it stands for (protofuzz.Family).
var knownFamilies = map[string]string{}

// known names the known divergence d is, or returns "".
func known(d *protofuzz.Divergence) string {
	if os.Getenv(knownEnv) == "1" {
		return ""
	}
	family := protofuzz.Family(d)
	for name, f := range knownFamilies {
		if _, ok := knownDivergences[name]; ok && f == family {
			return name
		}
	}
	return ""
}

func setupEnv(t testing.TB) *protofuzz.Env {
	t.Helper()
	var logger *slog.Logger
	if os.Getenv(logEnv) == "1" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	env, err := protofuzz.NewEnv(context.Background(), pgtest.Shared(t), logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	return env
}

// regressions are sequences whose replies once differed through pgwarden.
// direct is PostgreSQL's answer, checked first so that a case cannot pass
// because both sides misbehave the same way. A race is sent repeat times.
var regressions = []struct {
	name   string
	seq    []pgproto3.FrontendMessage
	settle bool // wait for the replies before sending the trailer
	direct []string
	repeat int
	inTx   bool // the sequence leaves a transaction open
	// noTrailer: direct already holds the trailer's replies.
	noTrailer bool
}{
	{
		name: "hidden describe after failed copy",
		seq: []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "copy t from stdin"},
			&pgproto3.Bind{},
			&pgproto3.Execute{},
			&pgproto3.CopyData{Data: []byte("bad\n")},
			&pgproto3.Sync{},
			&pgproto3.Parse{Query: "select 1"},
			&pgproto3.Bind{},
			&pgproto3.Execute{},
			&pgproto3.Sync{},
		},
		direct: []string{"ParseComplete", "BindComplete", "CopyInResponse", "ErrorResponse ERROR 22P02", "ReadyForQuery I",
			"ParseComplete", "BindComplete", "DataRow x1", "CommandComplete SELECT 1", "ReadyForQuery I"},
		repeat: 30,
	},
	{
		name: "panic after failed copy",
		seq: []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "copy t from stdin"},
			&pgproto3.Bind{},
			&pgproto3.Execute{MaxRows: 2},
			&pgproto3.CopyData{Data: []byte("bad\n")},
			&pgproto3.Sync{},
			&pgproto3.Query{String: "select g from generate_series(1, 3000) g"},
			&pgproto3.Sync{},
		},
		direct: []string{"ParseComplete", "BindComplete", "CopyInResponse", "ErrorResponse ERROR 22P02", "ReadyForQuery I",
			"RowDescription g", "DataRow x3000", "CommandComplete SELECT 3000", "ReadyForQuery I", "ReadyForQuery I"},
		repeat: 12,
	},
	{
		name: "sync after failed simple copy",
		seq: []pgproto3.FrontendMessage{
			&pgproto3.Query{String: "copy t from stdin"},
			&pgproto3.CopyData{Data: []byte("bad\n")},
			&pgproto3.Sync{},
			&pgproto3.Parse{Query: "select 1"},
			&pgproto3.Bind{},
			&pgproto3.Execute{},
			&pgproto3.Sync{},
		},
		direct: []string{"CopyInResponse", "ErrorResponse ERROR 22P02", "ReadyForQuery I", "ReadyForQuery I",
			"ParseComplete", "BindComplete", "DataRow x1", "CommandComplete SELECT 1", "ReadyForQuery I"},
		repeat: 24,
	},
	{
		name: "sync after failed copydata settled",
		seq: []pgproto3.FrontendMessage{
			&pgproto3.Query{String: "copy t from stdin"},
			&pgproto3.CopyData{Data: []byte("bad\n")},
			&pgproto3.Sync{},
			&pgproto3.CopyDone{},
		},
		settle: true,
		// The COPY failed before the Sync, which the server then answers.
		direct: []string{"CopyInResponse", "ErrorResponse ERROR 22P02", "ReadyForQuery I", "ReadyForQuery I"},
		repeat: 6,
	},
	{
		name: "sync in copy then copyfail",
		seq: []pgproto3.FrontendMessage{
			&pgproto3.Query{String: "copy t from stdin"},
			&pgproto3.Sync{},
			&pgproto3.CopyFail{Message: "no"},
		},
		// The Sync is COPY input, ignored.
		direct: []string{"CopyInResponse", "ErrorResponse ERROR 57014", "ReadyForQuery I"},
	},
	{
		name: "block then query without sync",
		seq: []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "select g from generate_series(1, 3000) g"},
			&pgproto3.Bind{},
			&pgproto3.Execute{},
			&pgproto3.Query{String: "select 1"},
		},
		direct: []string{"ParseComplete", "BindComplete", "DataRow x3000", "CommandComplete SELECT 3000",
			"RowDescription ?column?", "DataRow x1", "CommandComplete SELECT 1", "ReadyForQuery I"},
		repeat: 12,
	},
	{
		name: "copy after block in transaction",
		seq: []pgproto3.FrontendMessage{
			&pgproto3.Query{String: "begin; select g from generate_series(1, 3000) g"},
			&pgproto3.Query{String: "copy t from stdin"},
		},
		direct: []string{"CommandComplete BEGIN", "RowDescription g", "DataRow x3000", "CommandComplete SELECT 3000", "ReadyForQuery T",
			"CopyInResponse", "ErrorResponse ERROR 57014", "ReadyForQuery E", "ReadyForQuery E",
			"CommandComplete ROLLBACK", "RowDescription ?column?", "DataRow x1", "CommandComplete SELECT 1", "ReadyForQuery I"},
		noTrailer: true,
	},
	{
		name:   "block in open transaction",
		seq:    []pgproto3.FrontendMessage{&pgproto3.Query{String: "begin; select g from generate_series(1, 3000) g"}},
		direct: []string{"CommandComplete BEGIN", "RowDescription g", "DataRow x3000", "CommandComplete SELECT 3000", "ReadyForQuery T"},
		inTx:   true,
	},
	{
		name:   "terminate after sync",
		seq:    []pgproto3.FrontendMessage{&pgproto3.Sync{}, &pgproto3.Terminate{}},
		direct: []string{"ReadyForQuery I", "<closed>"},
		repeat: 60,
	},
	{
		name: "error then query before sync",
		seq: []pgproto3.FrontendMessage{
			&pgproto3.Execute{Portal: "pf_unknown"},
			&pgproto3.Query{String: "select 2"},
			&pgproto3.Parse{Query: "select 1"},
			&pgproto3.Bind{},
			&pgproto3.Sync{},
		},
		// The server skips everything up to the Sync, the Query included.
		direct: []string{"ErrorResponse ERROR 34000", "ReadyForQuery I"},
	},
	{
		name: "query during copy in",
		seq: []pgproto3.FrontendMessage{
			&pgproto3.Query{String: "copy t from stdin"},
			&pgproto3.CopyData{Data: []byte("1\ta@example.com\n")},
			&pgproto3.Query{String: "select 1"},
			&pgproto3.CopyDone{},
		},
		// The Query ends the COPY with an error, and the session: the
		// server stopped reading in the middle of the Query's frame.
		direct: []string{"CopyInResponse", "ErrorResponse ERROR 08P01", "ErrorResponse FATAL 08P01", "<closed>"},
	},
	{
		name: "query inside an extended batch",
		seq: []pgproto3.FrontendMessage{
			&pgproto3.Parse{Query: "select 1"},
			&pgproto3.Bind{},
			&pgproto3.Execute{},
			&pgproto3.Query{String: "select 2"},
			&pgproto3.Sync{},
		},
		// The Query implies a Sync: its ReadyForQuery, then the Sync's.
		direct: []string{"ParseComplete", "BindComplete", "DataRow x1", "CommandComplete SELECT 1",
			"RowDescription ?column?", "DataRow x1", "CommandComplete SELECT 1", "ReadyForQuery I", "ReadyForQuery I"},
	},
	{
		name: "execute error then functioncall",
		seq: []pgproto3.FrontendMessage{
			&pgproto3.Execute{},
			&pgproto3.FunctionCall{Function: 177, ArgFormatCodes: []uint16{0}, Arguments: [][]byte{[]byte("1"), []byte("2")}},
			&pgproto3.Parse{Query: "copy t from stdin"},
		},
		// The server skips all to the trailer's Sync.
		direct: []string{"ErrorResponse ERROR 34000"},
	},
	{
		name: "describe error then query and close",
		seq: []pgproto3.FrontendMessage{
			&pgproto3.Describe{ObjectType: 'P'},
			&pgproto3.Query{String: "rollback"},
			&pgproto3.Close{ObjectType: 'S'},
		},
		direct: []string{"ErrorResponse ERROR 34000"},
	},
	{
		name: "copy in a multi-statement query then another copy",
		seq: []pgproto3.FrontendMessage{
			&pgproto3.Query{String: "copy t from stdin; select 3"},
			&pgproto3.Query{String: "copy t from stdin"},
		},
		// The second Query arrives as COPY input.
		direct: []string{"CopyInResponse", "ErrorResponse ERROR 08P01", "ErrorResponse FATAL 08P01", "<closed>"},
	},
	{
		name: "copy fail outside copy",
		seq: []pgproto3.FrontendMessage{
			&pgproto3.CopyFail{Message: "no copy"},
			&pgproto3.CopyDone{},
			&pgproto3.CopyData{Data: []byte("x")},
			&pgproto3.Query{String: "select 1"},
		},
		direct: []string{"RowDescription ?column?", "DataRow x1", "CommandComplete SELECT 1", "ReadyForQuery I"},
	},
}

// trailerReplies is PostgreSQL's answer to the trailer after a sequence
// that leaves the session idle.
var trailerReplies = []string{"ReadyForQuery I", "NoticeResponse WARNING 25P01", "CommandComplete ROLLBACK",
	"RowDescription ?column?", "DataRow x1", "CommandComplete SELECT 1", "ReadyForQuery I"}

// trailerRepliesInTx is PostgreSQL's answer to the trailer after a
// sequence that leaves a transaction open.
var trailerRepliesInTx = []string{"ReadyForQuery T", "CommandComplete ROLLBACK",
	"RowDescription ?column?", "DataRow x1", "CommandComplete SELECT 1", "ReadyForQuery I"}

// TestRegressions sends each regression sequence in one write to
// PostgreSQL and through each pgwarden of the Env, and compares the
// replies.
func TestRegressions(t *testing.T) {
	env := setupEnv(t)
	for _, tc := range regressions {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			seq := protofuzz.Sequence{Msgs: tc.seq, Settle: tc.settle}
			direct, err := env.Runner.Run(ctx, env.Direct, seq, -1)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.direct
			switch {
			case tc.noTrailer:
			case tc.inTx:
				want = append(want, trailerRepliesInTx...)
			case want[len(want)-1] != "<closed>":
				want = append(want, trailerReplies...)
			}
			if got, want := keys(direct), strings.Join(want, "\n"); got != want {
				t.Fatalf("PostgreSQL answered:\n%s\nwant:\n%s", direct, want)
			}
			if reason, ok := knownDivergences[tc.name]; ok && os.Getenv(knownEnv) != "1" {
				t.Skipf("known divergence (%s=1 runs it): %s", knownEnv, reason)
			}
			for _, p := range env.Proxies {
				for range max(tc.repeat, 1) {
					class, direct, proxied, err := env.Compare(ctx, p, seq)
					if err != nil {
						t.Fatal(err)
					}
					if class != "" {
						t.Errorf("through %s: %s\nPostgreSQL:\n%s\npgwarden:\n%s", p.Name, class, direct, proxied)
						break
					}
				}
			}
		})
	}
}

func keys(tr *protofuzz.Transcript) string {
	var ks []string
	for _, l := range tr.Lines {
		ks = append(ks, l.Key)
	}
	if tr.End != protofuzz.EndComplete || len(tr.Leaks) > 0 {
		ks = append(ks, "<"+string(tr.End)+">")
		ks = append(ks, tr.Leaks...)
	}
	return strings.Join(ks, "\n")
}

// TestRandomSequences compares a few hundred random sequences (fixed
// seeds, bounded in time) through both proxies with PostgreSQL.
func TestRandomSequences(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	env := setupEnv(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	sum := env.Fuzz(ctx, protofuzz.Config{
		Seed:           1,
		Count:          300,
		Duration:       20 * time.Second,
		MinimizeBudget: 10 * time.Second,
		Known:          func(d *protofuzz.Divergence) bool { return known(d) != "" },
		OnDivergence: func(d *protofuzz.Divergence) {
			if d.Flaky {
				// A race, or a slow machine: reported, but a flaky
				// test helps no one. `make fuzz` goes after these.
				t.Logf("seed %d: flaky divergence:\n%s", d.Seed, d.Report())
				return
			}
			if name := known(d); name != "" {
				t.Logf("seed %d: known divergence %q: %s through %s", d.Seed, name, d.Class, d.Proxy)
				return
			}
			t.Errorf("seed %d:\n%s", d.Seed, d.Report())
		},
	})
	for _, err := range sum.Errors {
		t.Log(err)
	}
	t.Log(sum)
	if sum.Sequences < 20 {
		t.Errorf("only %d sequences ran", sum.Sequences)
	}
}

// FuzzAgainstPostgres lets the fuzzer's input bytes drive the generator
// (one byte per choice), so that coverage of the relay guides it, and
// compares the sequence through every proxy with PostgreSQL. Run it with
// -parallel 1 (each worker process starts a PostgreSQL cluster) and
// -fuzzminimizetime 1x: coverage of the relay's goroutines varies with
// timing, so many inputs look new, and minimizing each for the default
// minute leaves no time to fuzz.
func FuzzAgainstPostgres(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{3, 0, 4, 1, 9, 0, 0, 0, 0, 4, 0})
	f.Add([]byte{7, 20, 2, 30, 10, 40, 12, 50, 9, 3, 60, 15, 70, 6})
	f.Add([]byte("protofuzz: a longer input makes a longer sequence"))
	env := setupEnv(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		seq := protofuzz.Generate(protofuzz.ByteSource(data), 8)
		for _, p := range env.Proxies {
			class, direct, proxied, err := env.Compare(t.Context(), p, seq)
			if err != nil {
				t.Fatal(err)
			}
			if class == "" {
				continue
			}
			d := &protofuzz.Divergence{Proxy: p.Name, Class: class, Seq: seq, Direct: direct, Proxied: proxied}
			if name := known(d); name != "" {
				t.Logf("known divergence %q: %s through %s", name, class, p.Name)
				continue
			}
			t.Errorf("through %s: %s\nsent:\n%s\nPostgreSQL:\n%s\npgwarden:\n%s", p.Name, class,
				strings.Join(protofuzz.RenderSequence(seq), "\n"), direct, proxied)
		}
	})
}
