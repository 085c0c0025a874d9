package e2e

import (
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
