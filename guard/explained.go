package guard

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/policy"
	"github.com/pgwarden/pgwarden/policy/sqltext"
	"github.com/pgwarden/pgwarden/proxy"
)

// explainedState caches each employee's explained keys.
type explainedState struct {
	mu   sync.Mutex
	keys map[string]explainedKeys
}

type explainedKeys struct {
	set     map[string]struct{}
	fetched time.Time
	failed  bool
}

// keyColumn is the result column that holds the explained_access table's
// key, and how to read it.
type keyColumn struct {
	// index is the key's column; -1: the result has no column of the
	// table; noKey: it has columns of the table but not its key, so its
	// rows cannot be explained.
	index  int
	format int16
	typ    uint32
	// inferred are the keys the statement's predicate reads, when the
	// result does not carry them (noKey).
	inferred inferredKeys
}

// inferredKeys are the keys a statement reads as its predicate says: a
// list (= and IN) or a range (BETWEEN, < and >), whose n-th row is taken to
// be the n-th key. A sweep that leaves the key out of its result
// (WHERE id BETWEEN $1 AND $1 + 19) is then a sweep still.
type inferredKeys struct {
	list   []int64
	lo, hi int64
	ranged bool
}

// maxInferredRange bounds a range taken as the keys of a result: past it,
// the predicate tells too little of which rows came back.
const maxInferredRange = 10000

func (k inferredKeys) at(n int64) (int64, bool) {
	switch {
	case k.list != nil:
		if n < int64(len(k.list)) {
			return k.list[n], true
		}
	case k.ranged:
		if key := k.lo + n; key <= k.hi {
			return key, true
		}
	}
	return 0, false
}

// inferKeys reads the keys st reads of the explained_access table from its
// predicate on the key: constants and the values its Execute binds.
func (s *session) inferKeys(st *proxy.Statement) inferredKeys {
	e := s.cc().p.Explained()
	sql := s.sqlOf(st)
	if e.Schema == "" || sql == "" {
		return inferredKeys{}
	}
	info := s.analyze(sql)
	if len(info.Relations) != 1 || s.qualify(info.Relations[0]) != e.Schema+"."+e.Table {
		return inferredKeys{}
	}
	var params *proxy.Params
	if st.Kind == proxy.ExtendedExecute {
		params = st.Params()
	}
	var k inferredKeys
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	for _, p := range info.Predicates {
		if p.Column != e.Key {
			continue
		}
		vals := make([]int64, 0, len(p.Values))
		for _, o := range p.Values {
			v, ok := operandValue(o, params)
			if !ok {
				return inferredKeys{}
			}
			vals = append(vals, v)
		}
		switch p.Op {
		case "=", "in":
			k.list = vals
		case "between":
			lo, hi = max(lo, vals[0]), min(hi, vals[1])
		case ">":
			lo = max(lo, vals[0]+1)
		case ">=":
			lo = max(lo, vals[0])
		case "<":
			hi = min(hi, vals[0]-1)
		case "<=":
			hi = min(hi, vals[0])
		}
	}
	if k.list == nil && lo != math.MinInt64 && hi != math.MaxInt64 && hi >= lo && uint64(hi)-uint64(lo) < maxInferredRange {
		k.lo, k.hi, k.ranged = lo, hi, true
	}
	return k
}

// operandValue is an integer operand's value, a parameter's read from the
// Bind in text or binary format.
func operandValue(o sqltext.Operand, params *proxy.Params) (int64, bool) {
	if o.Param == 0 {
		v, err := strconv.ParseInt(o.Const, 10, 64)
		return v, err == nil
	}
	if params == nil || o.Param > len(params.Values) || params.Values[o.Param-1] == nil {
		return 0, false
	}
	b := params.Values[o.Param-1]
	format := int16(0)
	switch {
	case len(params.Formats) == 1:
		format = params.Formats[0]
	case o.Param <= len(params.Formats):
		format = params.Formats[o.Param-1]
	}
	var v int64
	if format == 0 {
		var err error
		if v, err = strconv.ParseInt(string(b), 10, 64); err != nil {
			return 0, false
		}
	} else {
		switch len(b) {
		case 2:
			v = int64(int16(binary.BigEndian.Uint16(b)))
		case 4:
			v = int64(int32(binary.BigEndian.Uint32(b)))
		case 8:
			v = int64(binary.BigEndian.Uint64(b))
		default:
			return 0, false
		}
	}
	if v > math.MaxInt64-maxInferredRange || v < math.MinInt64+maxInferredRange {
		return 0, false
	}
	return v + o.Add, true
}

// keyText reads a key value as the explained_access query returns it
// (text): binary integers and UUIDs are converted; other binary types are
// unknown ("", false).
func (k keyColumn) keyText(v []byte) (string, bool) {
	if k.format == 0 {
		return string(v), true
	}
	switch {
	case k.typ == 20 && len(v) == 8: // int8
		return strconv.FormatInt(int64(binary.BigEndian.Uint64(v)), 10), true
	case k.typ == 23 && len(v) == 4: // int4
		return strconv.FormatInt(int64(int32(binary.BigEndian.Uint32(v))), 10), true
	case k.typ == 21 && len(v) == 2: // int2
		return strconv.FormatInt(int64(int16(binary.BigEndian.Uint16(v))), 10), true
	case k.typ == 2950 && len(v) == 16: // uuid
		h := hex.EncodeToString(v)
		return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], true
	case k.typ == 25 || k.typ == 1043 || k.typ == 1042: // text, varchar, bpchar
		return string(v), true
	}
	return "", false
}

const noKey = -2

// findKeyColumn locates the explained_access key among a result's
// columns, resolved through the catalog.
func findKeyColumn(e policy.ExplainedAccess, i int, fd pgproto3.FieldDescription, schema, table, column string, k *keyColumn) {
	if e.Schema == "" || schema != e.Schema || table != e.Table || k.index >= 0 {
		return
	}
	if column == e.Key {
		*k = keyColumn{index: i, format: fd.Format, typ: fd.DataTypeOID}
		return
	}
	k.index = noKey
}

// explained reports whether employee has a recorded reason to see the
// row whose key is key. The employee's keys are fetched with the policy's
// query and reused for its refresh period; when the query fails, every row
// is unexplained until it works again (the side of caution), and the
// failure is logged.
func (s *session) explained(e policy.ExplainedAccess, key, employee string) bool {
	if e.Query == "" {
		return true
	}
	g := s.g
	now := g.cfg.Now()
	g.explained.mu.Lock()
	k, ok := g.explained.keys[employee]
	g.explained.mu.Unlock()
	if !ok || now.Sub(k.fetched) >= e.Refresh || now.Before(k.fetched) {
		k = explainedKeys{fetched: now}
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.CatalogTimeout)
		keys, err := g.cfg.Catalog.ExplainedKeys(ctx, e.Query, employee)
		cancel()
		if err != nil {
			s.log.Warn("explained_access_failed", "error", err)
			k.failed = true
		}
		k.set = make(map[string]struct{}, len(keys))
		for _, key := range keys {
			k.set[key] = struct{}{}
		}
		g.explained.mu.Lock()
		if g.explained.keys == nil {
			g.explained.keys = make(map[string]explainedKeys)
		}
		g.explained.keys[employee] = k
		g.explained.mu.Unlock()
	}
	_, in := k.set[key]
	return in
}

// sweepSpan is how far back keys count as read, and sweepGap how close
// two keys must be to be neighbours.
const (
	sweepSpan = time.Hour
	sweepGap  = 2
	// sweepKeep bounds each employee's remembered keys.
	sweepKeep = 10000
)

// keyHistory is the numeric keys an employee read recently, for sweeps.
type keyHistory struct {
	at    map[int64]time.Time
	order []int64 // oldest first, for trimming
}

// sweepState holds every employee's key history.
type sweepState struct {
	mu sync.Mutex
	by map[string]*keyHistory
}

// sequential reports whether key is next to a key the employee read in
// the last sweepSpan, and remembers it.
func (g *Guard) sequential(employee string, key int64, now time.Time) bool {
	g.sweeps.mu.Lock()
	defer g.sweeps.mu.Unlock()
	if g.sweeps.by == nil {
		g.sweeps.by = make(map[string]*keyHistory)
	}
	h := g.sweeps.by[employee]
	if h == nil {
		h = &keyHistory{at: make(map[int64]time.Time)}
		g.sweeps.by[employee] = h
	}
	near := false
	for d := int64(1); d <= sweepGap && !near; d++ {
		for _, k := range [2]int64{key - d, key + d} {
			if t, ok := h.at[k]; ok && now.Sub(t) < sweepSpan {
				near = true
			}
		}
	}
	if _, seen := h.at[key]; !seen {
		h.order = append(h.order, key)
	}
	h.at[key] = now
	for len(h.order) > sweepKeep {
		delete(h.at, h.order[0])
		h.order = h.order[1:]
	}
	return near
}
