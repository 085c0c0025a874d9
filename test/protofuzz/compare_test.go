package protofuzz

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestAfterTerminate: once the client has sent Terminate it reads nothing
// more, so a proxied answer that is a prefix of PostgreSQL's, its last run
// of rows cut short, is no divergence; one with more, or other, lines is.
func TestAfterTerminate(t *testing.T) {
	seq := Sequence{Msgs: []pgproto3.FrontendMessage{&pgproto3.Execute{}, &pgproto3.Terminate{}}}
	tr := func(lines ...string) *Transcript {
		t := &Transcript{End: EndClosed}
		for _, l := range lines {
			t.Lines = append(t.Lines, Line{Key: l})
		}
		return t
	}
	direct := tr("BindComplete", "CopyOutResponse", "CopyData x1747")
	for _, c := range []struct {
		proxied *Transcript
		same    bool
	}{
		{tr("BindComplete", "CopyOutResponse", "CopyData x1746"), true},
		{tr("BindComplete", "CopyOutResponse"), true},
		{tr("BindComplete", "CopyOutResponse", "CopyData x1747"), true},
		{tr("BindComplete", "CopyOutResponse", "CopyData x1748"), false},
		{tr("BindComplete", "ErrorResponse ERROR 42501"), false},
	} {
		got := afterTerminate(seq, direct, c.proxied)
		if same := got.Key() == c.proxied.Key(); same != c.same {
			t.Errorf("proxied %q: PostgreSQL's answer taken as %q, same %v; want %v", c.proxied.Key(), got.Key(), same, c.same)
		}
	}
	if got := afterTerminate(Sequence{Msgs: []pgproto3.FrontendMessage{&pgproto3.Execute{}}}, direct, tr("BindComplete")); got.Key() != direct.Key() {
		t.Errorf("without Terminate: %q, want PostgreSQL's answer whole", got.Key())
	}
	if direct.Lines[2].Key != "CopyData x1747" {
		t.Errorf("PostgreSQL's transcript was changed: %q", direct.Key())
	}
}
