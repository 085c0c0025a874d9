package tools

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPsqlMetaCommands runs psql's describe commands through pgwarden and
// direct: the outputs are the same.
func TestPsqlMetaCommands(t *testing.T) {
	ctx := testCtx(t)
	src := source(t)
	w := startWarden(t)
	for _, cmd := range []string{`\d`, `\dt+`, `\df app.*`, `\dn`, `\l`, `\d customers`, `\d+ app.orders`,
		`\dv app.*`, `\ds app.*`, `\di app.*`, `\dl`, `\dp app.*`, `\du`, `\dx`, `\sf app.order_value`} {
		t.Run(cmd, func(t *testing.T) {
			args := []string{"-X", "-d", src, "-c", cmd}
			want := mustRun(t, ctx, direct(t), "psql", args...)
			got := mustRun(t, ctx, w.endpoint, "psql", args...)
			if got.stdout != want.stdout || got.stderr != want.stderr {
				t.Errorf("psql -c %q through pgwarden:\n%s\n%s\ndirect:\n%s\n%s", cmd, got.stdout, got.stderr, want.stdout, want.stderr)
			}
			if want.stdout == "" {
				t.Errorf("psql -c %q printed nothing", cmd)
			}
		})
	}
}

// TestPsqlCopy runs \copy out and in through pgwarden: the file is the one
// a direct \copy writes, and the table loaded from it equals the source.
func TestPsqlCopy(t *testing.T) {
	ctx := testCtx(t)
	src := source(t)
	w := startWarden(t)
	admin := connect(t, ctx, direct(t), src)
	dir := t.TempDir()
	for _, tc := range []struct{ name, options string }{
		{"text", ""},
		{"csv", " WITH (FORMAT csv, HEADER)"},
		{"binary", " WITH (FORMAT binary)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := map[string][]byte{}
			for _, e := range []endpoint{direct(t), w.endpoint} {
				file := filepath.Join(dir, tc.name+"."+e.name)
				mustRun(t, ctx, e, "psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", src,
					"-c", `\copy (SELECT * FROM public.customers ORDER BY id) TO '`+file+`'`+tc.options)
				b, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				out[e.name] = b
			}
			if len(out["direct"]) == 0 || !bytes.Equal(out["direct"], out["pgwarden"]) {
				t.Fatalf("\\copy to a file: %d bytes through pgwarden, %d direct, not the same", len(out["pgwarden"]), len(out["direct"]))
			}

			if _, err := admin.Exec(ctx, "DROP TABLE IF EXISTS copy_in; CREATE TABLE copy_in (LIKE public.customers)"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { admin.Exec(ctx, "DROP TABLE IF EXISTS copy_in") })
			r := mustRun(t, ctx, w.endpoint, "psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", src,
				"-c", `\copy copy_in FROM '`+filepath.Join(dir, tc.name+".pgwarden")+`'`+tc.options)
			if r.stdout != "COPY 2000\n" {
				t.Errorf("\\copy from a file printed %q", r.stdout)
			}
			var same bool
			if err := admin.QueryRow(ctx, `SELECT (SELECT array_agg(c ORDER BY id)::text FROM public.customers c) =
				(SELECT array_agg(c ORDER BY id)::text FROM copy_in c)`).Scan(&same); err != nil || !same {
				t.Errorf("table loaded with \\copy through pgwarden differs from the source (%v)", err)
			}
		})
	}
}

// TestPsqlFetchCount reads a table through a cursor, 300 rows a FETCH, as
// psql does with FETCH_COUNT: the output is the direct one.
func TestPsqlFetchCount(t *testing.T) {
	ctx := testCtx(t)
	src := source(t)
	w := startWarden(t)
	args := []string{"-X", "-v", "ON_ERROR_STOP=1", "-v", "FETCH_COUNT=300", "-d", src,
		"-c", "SELECT o.*, c.email FROM app.orders o JOIN public.customers c ON c.id = o.customer_id ORDER BY o.id"}
	want := mustRun(t, ctx, direct(t), "psql", args...)
	got := mustRun(t, ctx, w.endpoint, "psql", args...)
	if got.stdout != want.stdout || !strings.Contains(want.stdout, "(3000 rows)") {
		t.Errorf("psql with FETCH_COUNT through pgwarden printed %d bytes, direct %d (%.200q)", len(got.stdout), len(want.stdout), want.stdout)
	}
}
