package audit

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"
)

// TestMarshalDataAsEncodingJSON: the records of sessions and statements
// come out byte for byte as encoding/json writes them, whether the
// reflection-free path takes them or leaves them to encoding/json.
func TestMarshalDataAsEncodingJSON(t *testing.T) {
	cases := []map[string]any{
		{},
		{"database": "app", "client_tls": true, "upstream_tls": false, "user": "alice", "employee": "alice",
			"identified_by": "role", "client_addr": "127.0.0.1:5432", "application_name": ""},
		{"statements": int64(3), "rows": int64(-1), "bytes": int64(math.MaxInt64), "pii_rows": 0,
			"pii_values": map[string]int64{"email": 2, "name": 1}, "error": "client terminated the session"},
		{"seq": uint64(math.MaxUint64), "n": math.MinInt, "groups": []string{"b", "a"}, "none": nil,
			"empty": []string{}, "nil_groups": []string(nil), "counts": map[string]int{}, "nil_counts": map[string]int(nil)},
		{"sql": "SELECT '<a>' & 1 FROM t WHERE x > 2"},
		// Left to encoding/json: escapes, non-ASCII, floats, structs.
		{"sql": `SELECT "quoted", 'back\slash'`},
		{"sql": "line one\nline two\ttab"},
		{"name": "Zoë", "sep": "\u2028"},
		{"bad": string([]byte{0xff, 'a'})},
		{"ratio": 0.5},
		{"nested": map[string]any{"a": 1}},
		{"k\"ey": 1},
		{"counts": map[string]int{"é": 1}},
		{"groups": []string{"ok", "not\tok"}},
		{"struct": struct{ A int }{1}},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		m := map[string]any{}
		for range rng.IntN(8) {
			k := randString(rng)
			switch rng.IntN(6) {
			case 0:
				m[k] = randString(rng)
			case 1:
				m[k] = rng.IntN(2) == 0
			case 2:
				m[k] = rng.Int64() - math.MaxInt64/2
			case 3:
				m[k] = []string{randString(rng), randString(rng)}
			case 4:
				m[k] = map[string]int64{randString(rng): rng.Int64N(100)}
			default:
				m[k] = nil
			}
		}
		cases = append(cases, m)
	}
	fast := 0
	for i, m := range cases {
		want, err := marshalJSON(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := MarshalData(m)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("case %d %v:\n got %s\nwant %s", i, m, got, want)
		}
		if _, ok := appendFlat(nil, m); ok {
			fast++
		}
	}
	if fast < len(cases)/4 {
		t.Errorf("only %d of %d cases took the reflection-free path", fast, len(cases))
	}
}

// randString is mostly plain ASCII, sometimes a character encoding/json
// escapes or a multi-byte one.
func randString(rng *rand.Rand) string {
	const plain = "abcdefghijklmnopqrstuvwxyz_0123456789 <>&.:;,'()*=-"
	var b []byte
	for range rng.IntN(12) {
		b = append(b, plain[rng.IntN(len(plain))])
	}
	if rng.IntN(8) == 0 {
		b = append(b, []string{`"`, `\`, "\n", "\x01", "é", "\u2028", "\x7f"}[rng.IntN(7)]...)
	}
	return string(b)
}

func BenchmarkMarshalDataSession(b *testing.B) {
	m := map[string]any{"database": "app", "client_tls": true, "upstream_tls": false, "user": "alice", "employee": "alice",
		"identified_by": "role", "client_addr": "127.0.0.1:5432", "application_name": "psql"}
	for b.Loop() {
		if _, err := MarshalData(m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalDataSessionJSON(b *testing.B) {
	m := map[string]any{"database": "app", "client_tls": true, "upstream_tls": false, "user": "alice", "employee": "alice",
		"identified_by": "role", "client_addr": "127.0.0.1:5432", "application_name": "psql"}
	for b.Loop() {
		if _, err := marshalJSON(m); err != nil {
			b.Fatal(err)
		}
	}
}
