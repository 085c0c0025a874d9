package proxy

import (
	"bytes"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestBindParams: the parameter section a Bind carries is found, and
// Statement.Params decodes it as sent: formats, NULLs and empty values.
func TestBindParams(t *testing.T) {
	bind := &pgproto3.Bind{
		DestinationPortal:    "p1",
		PreparedStatement:    "s1",
		ParameterFormatCodes: []int16{1, 0, 0},
		Parameters:           [][]byte{{0, 0, 0, 42}, nil, {}},
		ResultFormatCodes:    []int16{1},
	}
	frame, err := bind.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	portal, stmt, params, formats, err := bindNames(frame[5:])
	if err != nil {
		t.Fatal(err)
	}
	if string(portal) != "p1" || string(stmt) != "s1" || !slices.Equal(formats, []int16{1}) {
		t.Fatalf("names %q %q formats %v", portal, stmt, formats)
	}
	st := &Statement{params: bytes.Clone(params), paramOIDs: []uint32{23}}
	p := st.Params()
	if p == nil || !slices.Equal(p.Formats, bind.ParameterFormatCodes) || !slices.Equal(p.OIDs, []uint32{23}) || len(p.Values) != 3 {
		t.Fatalf("Params() = %+v", p)
	}
	if !bytes.Equal(p.Values[0], []byte{0, 0, 0, 42}) || p.Values[1] != nil || p.Values[2] == nil || len(p.Values[2]) != 0 {
		t.Errorf("values %q", p.Values)
	}

	// No parameters: nil.
	frame, _ = (&pgproto3.Bind{}).Encode(nil)
	_, _, params, _, err = bindNames(frame[5:])
	if err != nil {
		t.Fatal(err)
	}
	if p := (&Statement{params: params}).Params(); p != nil {
		t.Errorf("no parameters: %+v", p)
	}
	if p := (&Statement{}).Params(); p != nil {
		t.Errorf("no Bind: %+v", p)
	}
}

// TestParseParamOIDs: the types a Parse declares, and a truncated list
// refused.
func TestParseParamOIDs(t *testing.T) {
	frame, _ := (&pgproto3.Parse{Name: "s", Query: "SELECT $1, $2", ParameterOIDs: []uint32{23, 25}}).Encode(nil)
	_, rest, _ := cstring(frame[5:])
	_, rest, _ = cstring(rest)
	oids, err := parseParamOIDs(rest)
	if err != nil || !slices.Equal(oids, []uint32{23, 25}) {
		t.Fatalf("oids %v, %v", oids, err)
	}
	if _, err := parseParamOIDs(rest[:len(rest)-1]); err == nil {
		t.Error("truncated OIDs accepted")
	}
}
