package e2e

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/test/proxytest"
)

// TestExecuteWithoutDescribe sends Parse, Bind, Execute, Sync with no
// Describe, as some drivers do: the server would send no RowDescription, so
// pgwarden asks for one itself. The inspector must see the columns; the
// client must not see the extra answer, and its transcript must equal the
// direct one.
func TestExecuteWithoutDescribe(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	p := proxytest.Start(t, proxytest.WithInspector(rec))
	ctx := proxytest.Ctx(t, 0)
	direct := proxytest.RawStartup(t, ctx, p.Cluster.Addr(), nil)
	proxied := proxytest.RawStartup(t, ctx, p.Addr, map[string]string{"application_name": "nodescribe"})

	batch := []pgproto3.FrontendMessage{
		&pgproto3.Parse{Query: "SELECT relname, relpages FROM pg_class WHERE relname = 'pg_class'"},
		&pgproto3.Bind{},
		&pgproto3.Execute{},
		&pgproto3.Parse{Query: "SELECT 1 AS one WHERE false"},
		&pgproto3.Bind{},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	}
	want := direct.Transcript(batch...)
	got := proxied.Transcript(batch...)
	proxytest.WantEqual(t, "transcript", want, got)
	for _, line := range got {
		if line == "RowDescription" || line == "NoData" {
			t.Errorf("client received pgwarden's own Describe answer: %q", got)
		}
	}
	events := only(rec.session(t, "nodescribe").take(), "describe")
	// The second statement returns no rows: nothing to describe to the
	// inspector, which is shown fields with the first row.
	if len(events) != 1 || events[0] != "describe execute#1 relname/19/0,relpages/23/0" {
		t.Errorf("inspector saw %q, want the columns of the first statement", events)
	}
}

// TestRepeatedExecuteWithoutDescribe executes one prepared statement in
// several batches without a Describe, as drivers that keep a statement's
// description from its first execution do. pgwarden
// asks the server to describe only the first portal and describes the
// later ones from the statement's columns: the inspector must see each
// portal's columns in the result formats of its own Bind, and the client
// the same transcript as direct.
func TestRepeatedExecuteWithoutDescribe(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	p := proxytest.Start(t, proxytest.WithInspector(rec))
	ctx := proxytest.Ctx(t, 0)
	direct := proxytest.RawStartup(t, ctx, p.Cluster.Addr(), nil)
	proxied := proxytest.RawStartup(t, ctx, p.Addr, map[string]string{"application_name": "redescribe"})

	const sql = "SELECT relname, relpages FROM pg_class WHERE relname = 'pg_class'"
	batches := [][]pgproto3.FrontendMessage{
		{&pgproto3.Parse{Name: "s", Query: sql}, &pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{}},
		{&pgproto3.Bind{PreparedStatement: "s", ResultFormatCodes: []int16{1}}, &pgproto3.Execute{}, &pgproto3.Sync{}},
		{&pgproto3.Bind{PreparedStatement: "s", ResultFormatCodes: []int16{0, 1}}, &pgproto3.Execute{}, &pgproto3.Sync{}},
		{&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{}},
	}
	for i, batch := range batches {
		want := direct.Transcript(batch...)
		got := proxied.Transcript(batch...)
		proxytest.WantEqual(t, fmt.Sprintf("transcript of batch %d", i+1), want, got)
	}
	events := only(rec.session(t, "redescribe").take(), "describe")
	want := []string{
		"describe execute#1 relname/19/0,relpages/23/0",
		"describe execute#2 relname/19/1,relpages/23/1",
		"describe execute#3 relname/19/0,relpages/23/1",
		"describe execute#4 relname/19/0,relpages/23/0",
	}
	proxytest.WantEqual(t, "inspector's descriptions", want, events)
}
