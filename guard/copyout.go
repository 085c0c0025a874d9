package guard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/pgwarden/pgwarden/policy/decode"
	"github.com/pgwarden/pgwarden/policy/detect"
	"github.com/pgwarden/pgwarden/proxy"
)

// COPY TO STDOUT of a masked result: each line of text or CSV data is cut
// into its fields, and each field that holds PII (by the declaration of
// the column COPY sends there, or by the detectors) is masked as a row's
// value would be and written back in the COPY's own quoting; other fields
// are forwarded byte for byte. Which columns COPY sends is learnt by
// describing its query, or a SELECT of its table's columns, through the
// catalog connection. Binary COPY cannot be cut into fields without its
// types' binary forms, and is refused.
// https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9

// maxCopyLine bounds a COPY line held back until its end arrives in a
// later CopyData (PostgreSQL sends one line per CopyData).
const maxCopyLine = 16 << 20

// maxKeptCopyBuffer bounds the buffer of rewritten COPY data a session
// keeps from one COPY to the next.
const maxKeptCopyBuffer = 64 << 10

// copyOut is the COPY TO STDOUT in progress.
type copyOut struct {
	// encoding is the session's client_encoding as the server last
	// reported it after the session began ("" before).
	encoding string
	st       *proxy.Statement
	// nth counts the COPYs of st's text (a simple Query may hold several).
	nth    int
	binary bool
	// prepared: opts, plan and refused are known.
	prepared bool
	// refused says why the data cannot be masked ("" if it can).
	refused string
	opts    copyOptions
	// plan classifies the fields of a line; nil: the detectors read every
	// field.
	plan []colPlan
	// header is set while the header line is still to come.
	header bool
	// partial is a line whose end has not arrived yet.
	partial []byte
	// out is the rewritten data; fields the current line's.
	out    []byte
	fields []copyField
	counts detect.Counts
}

// copyField is one field of a line: raw is its bytes as sent.
type copyField struct {
	raw    []byte
	quoted bool
}

// copyOptions are the options of a COPY statement that shape its data.
type copyOptions struct {
	csv           bool
	delim         byte
	null          []byte
	quote, escape byte
	forceQuote    bool
	header        bool
}

// CopyOut notes the start of a COPY TO STDOUT.
func (s *session) CopyOut(st *proxy.Statement, resp *pgproto3.CopyOutResponse) {
	nth := 0
	if s.copy.st == st {
		nth = s.copy.nth + 1
	}
	out, fields, enc := s.copy.out, s.copy.fields, s.copy.encoding
	if cap(out) > maxKeptCopyBuffer {
		// A long line's buffer is not kept for the session's life.
		out = nil
	}
	s.copy = copyOut{st: st, nth: nth, binary: resp.OverallFormat == 1, out: out[:0], fields: fields[:0], encoding: enc}
}

// copyOf returns the COPY in progress for st.
func (s *session) copyOf(st *proxy.Statement) *copyOut {
	if s.copy.st != st {
		// No CopyOutResponse seen for st (a test's inspector calls).
		s.copy = copyOut{st: st, encoding: s.copy.encoding}
	}
	return &s.copy
}

// maskCopy returns data with the PII of its lines masked, holding back a
// line whose end has not arrived, and the number of values masked; why is
// set when the data cannot be masked.
func (s *session) maskCopy(st *proxy.Statement, data []byte, final bool) (out []byte, masked int, why string) {
	c := s.copyOf(st)
	if c.binary {
		return nil, 0, "binary COPY cannot be masked in place: its values are in their types' binary forms (COPY in text or CSV format is masked line by line)"
	}
	if !c.prepared {
		s.prepareCopy(st, c)
	}
	if c.refused != "" {
		return nil, 0, c.refused
	}
	buf := data
	if len(c.partial) > 0 {
		c.partial = append(c.partial, data...)
		buf = c.partial
	}
	c.out = c.out[:0]
	for len(buf) > 0 {
		end, next := c.lineEnd(buf)
		if end < 0 {
			if !final {
				break
			}
			end, next = len(buf), len(buf)
		}
		line := buf[:end]
		if c.header {
			c.header = false
			c.out = append(c.out, buf[:next]...)
		} else {
			n, why := s.maskLine(c, line)
			if why != "" {
				return nil, 0, why
			}
			masked += n
			c.out = append(c.out, buf[end:next]...)
		}
		buf = buf[next:]
	}
	if len(buf) > maxCopyLine {
		return nil, 0, fmt.Sprintf("a COPY line longer than %d MiB cannot be masked", maxCopyLine>>20)
	}
	if len(buf) > 0 {
		// Held back until its end arrives (buf may alias c.partial).
		c.partial = append(c.partial[:0], buf...)
	} else {
		c.partial = c.partial[:0]
	}
	return c.out, masked, ""
}

// lineEnd returns where buf's first line ends and the next begins, -1
// when its end has not arrived. In text format a newline in a value is
// escaped; in CSV it is quoted.
func (c *copyOut) lineEnd(buf []byte) (end, next int) {
	if !c.opts.csv {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			return -1, -1
		}
		if i > 0 && buf[i-1] == '\r' {
			return i - 1, i + 1
		}
		return i, i + 1
	}
	quoted := false
	for i := 0; i < len(buf); i++ {
		b := buf[i]
		switch {
		case quoted && b == c.opts.escape && c.opts.escape != c.opts.quote && i+1 < len(buf) &&
			(buf[i+1] == c.opts.quote || buf[i+1] == c.opts.escape):
			i++
		case b == c.opts.quote:
			quoted = !quoted
		case !quoted && b == '\n':
			if i > 0 && buf[i-1] == '\r' {
				return i - 1, i + 1
			}
			return i, i + 1
		}
	}
	return -1, -1
}

// maskLine appends line to c.out with its PII fields masked, and returns
// how many it masked, or why it cannot.
func (s *session) maskLine(c *copyOut, line []byte) (int, string) {
	c.fields = c.splitLine(c.fields[:0], line)
	plan := c.plan
	if plan != nil && len(plan) != len(c.fields) {
		return 0, fmt.Sprintf("a COPY line of %d fields cannot be matched to the %d columns COPY sends", len(c.fields), len(plan))
	}
	pol := s.cc()
	null := s.enf.redacting != nil && s.enf.redacting.RedactWith == "null"
	n := 0
	for i, f := range c.fields {
		if i > 0 {
			c.out = append(c.out, c.opts.delim)
		}
		v, isNull := c.value(f)
		var p colPlan
		if plan != nil {
			p = plan[i]
		} else {
			p = colPlan{scan: pol.detectors != nil, textual: true}
		}
		if isNull || !s.copyPII(pol, p, v, &c.counts) {
			c.out = append(c.out, f.raw...)
			continue
		}
		n++
		var m []byte
		if !null {
			m = s.dec.masked(pol, p, v)
		}
		c.out = c.appendValue(c.out, m, f.quoted)
	}
	return n, ""
}

// copyPII reports whether v, of column c, is PII: as DataRow decides.
func (s *session) copyPII(pol *compiled, c colPlan, v []byte, counts *detect.Counts) bool {
	counts.Reset()
	var canaries int
	switch {
	case c.declared != "":
		return true
	case c.scan && pol.detectors.Scan(v, counts) > 0:
		return true
	case c.dec != decode.None && pol.detectors != nil && (c.dec != decode.Encoded || decode.MayBeEncoded(v)) &&
		s.dec.scan(pol, &c, v, counts, &canaries) > 0:
		return true
	case c.derived != "" && len(v) > 0:
		return true
	}
	return false
}

// splitLine cuts a line into its fields.
func (c *copyOut) splitLine(dst []copyField, line []byte) []copyField {
	start, quoted := 0, false
	fieldQuoted := false
	for i := 0; i < len(line); i++ {
		b := line[i]
		switch {
		case !c.opts.csv && b == '\\':
			i++
		case c.opts.csv && quoted && b == c.opts.escape && c.opts.escape != c.opts.quote && i+1 < len(line) &&
			(line[i+1] == c.opts.quote || line[i+1] == c.opts.escape):
			i++
		case c.opts.csv && b == c.opts.quote:
			if !quoted && i == start {
				fieldQuoted = true
			}
			quoted = !quoted
		case !quoted && b == c.opts.delim:
			dst = append(dst, copyField{raw: line[start:i], quoted: fieldQuoted})
			start, fieldQuoted = i+1, false
		}
	}
	return append(dst, copyField{raw: line[start:], quoted: fieldQuoted})
}

// value returns a field's value, and whether it is NULL.
func (c *copyOut) value(f copyField) ([]byte, bool) {
	if !f.quoted && bytes.Equal(f.raw, c.opts.null) {
		return nil, true
	}
	if c.opts.csv {
		if !f.quoted {
			return f.raw, false
		}
		v := make([]byte, 0, len(f.raw))
		raw := f.raw
		quoted := false
		for i := 0; i < len(raw); i++ {
			b := raw[i]
			switch {
			case quoted && b == c.opts.escape && i+1 < len(raw) && (raw[i+1] == c.opts.quote || raw[i+1] == c.opts.escape) &&
				(c.opts.escape != c.opts.quote || raw[i+1] == c.opts.quote):
				v = append(v, raw[i+1])
				i++
			case b == c.opts.quote:
				quoted = !quoted
			default:
				v = append(v, b)
			}
		}
		return v, false
	}
	if bytes.IndexByte(f.raw, '\\') < 0 {
		return f.raw, false
	}
	return unescapeText(f.raw), false
}

// unescapeText decodes text format's backslash sequences.
func unescapeText(raw []byte) []byte {
	v := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		b := raw[i]
		if b != '\\' || i+1 == len(raw) {
			v = append(v, b)
			continue
		}
		i++
		switch b = raw[i]; b {
		case 'b':
			v = append(v, '\b')
		case 'f':
			v = append(v, '\f')
		case 'n':
			v = append(v, '\n')
		case 'r':
			v = append(v, '\r')
		case 't':
			v = append(v, '\t')
		case 'v':
			v = append(v, '\v')
		case '0', '1', '2', '3', '4', '5', '6', '7':
			n := 0
			for k := 0; k < 3 && i < len(raw) && raw[i] >= '0' && raw[i] <= '7'; k++ {
				n = n*8 + int(raw[i]-'0')
				i++
			}
			i--
			v = append(v, byte(n))
		case 'x':
			n, k := 0, 0
			for ; k < 2 && i+1 < len(raw) && hexDigit(raw[i+1]) >= 0; k++ {
				n = n*16 + hexDigit(raw[i+1])
				i++
			}
			if k == 0 {
				v = append(v, 'x')
			} else {
				v = append(v, byte(n))
			}
		default:
			v = append(v, b)
		}
	}
	return v
}

func hexDigit(b byte) int {
	switch {
	case b >= '0' && b <= '9':
		return int(b - '0')
	case b >= 'a' && b <= 'f':
		return int(b-'a') + 10
	case b >= 'A' && b <= 'F':
		return int(b-'A') + 10
	}
	return -1
}

// appendValue appends a masked value (nil: NULL) in the COPY's format, as
// PostgreSQL would write it.
func (c *copyOut) appendValue(dst, v []byte, wasQuoted bool) []byte {
	if v == nil {
		return append(dst, c.opts.null...)
	}
	if !c.opts.csv {
		for _, b := range v {
			switch b {
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\v':
				dst = append(dst, '\\', 'v')
			case '\\', c.opts.delim:
				dst = append(dst, '\\', b)
			default:
				dst = append(dst, b)
			}
		}
		return dst
	}
	o := c.opts
	if !(o.forceQuote && wasQuoted) && !bytes.Equal(v, o.null) && !bytes.ContainsAny(v, string([]byte{o.delim, o.quote, '\r', '\n'})) &&
		!bytes.Equal(v, []byte(`\.`)) {
		return append(dst, v...)
	}
	dst = append(dst, o.quote)
	for _, b := range v {
		if b == o.quote || b == o.escape {
			dst = append(dst, o.escape)
		}
		dst = append(dst, b)
	}
	return append(dst, o.quote)
}

// describer is a Resolver that can describe a query's result columns;
// *catalog.Resolver is one.
type describer interface {
	Describe(ctx context.Context, searchPath []string, query string) ([]pgproto3.FieldDescription, error)
}

// prepareCopy reads the COPY's options from its text and learns the
// columns it sends. Columns that cannot be known are read by the detectors.
func (s *session) prepareCopy(st *proxy.Statement, c *copyOut) {
	c.prepared = true
	if enc := s.clientEncoding(); embedsASCII(enc) {
		c.refused = fmt.Sprintf("COPY in client encoding %s cannot be masked: its characters can hold the bytes of a delimiter or a backslash (use UTF8)", enc)
		return
	}
	stmt, version, err := copyStatement(s.sqlOf(st), c.nth)
	if err != nil {
		c.refused = err.Error()
		return
	}
	if c.opts, err = copyOptionsOf(stmt); err != nil {
		c.refused = err.Error()
		return
	}
	c.header = c.opts.header
	query := copyQuery(stmt, version)
	d, ok := s.cat.(describer)
	if query == "" || !ok {
		return
	}
	s.pathMu.Lock()
	s.resolvePath()
	path := s.path.schemas
	s.pathMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), s.g.cfg.CatalogTimeout)
	fields, err := d.Describe(ctx, path, query)
	cancel()
	if err != nil {
		s.log.Warn("copy_describe_failed", "statement_seq", seqOf(st), "error", err,
			"consequence", "the detectors alone tell which COPY fields to mask")
		return
	}
	if stmt.GetQuery() == nil && len(stmt.GetAttlist()) == 0 && len(fields) > 0 {
		fields = s.copiedColumns(st, fields)
	}
	c.plan = s.planColumns(nil, fields)
	s.derive(st, query, fields, c.plan)
}

// generatedColumns is a Resolver that tells a table's generated columns;
// *catalog.Resolver is one.
type generatedColumns interface {
	GeneratedColumns(ctx context.Context, tableOID uint32) ([]int16, error)
}

// copiedColumns returns the columns of a table that COPY of the table
// sends: all but the generated ones.
func (s *session) copiedColumns(st *proxy.Statement, fields []pgproto3.FieldDescription) []pgproto3.FieldDescription {
	g, ok := s.cat.(generatedColumns)
	if !ok {
		return fields
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.g.cfg.CatalogTimeout)
	gen, err := g.GeneratedColumns(ctx, fields[0].TableOID)
	cancel()
	if err != nil {
		s.log.Warn("copy_describe_failed", "statement_seq", seqOf(st), "error", err)
		return fields
	}
	if len(gen) == 0 {
		return fields
	}
	out := make([]pgproto3.FieldDescription, 0, len(fields))
	for _, f := range fields {
		if !slices.Contains(gen, int16(f.TableAttributeNumber)) {
			out = append(out, f)
		}
	}
	return out
}

// clientEncoding is the session's client_encoding: as last reported, else
// as the client asked at startup ("" for the server's default).
func (s *session) clientEncoding() string {
	if s.copy.encoding != "" {
		return s.copy.encoding
	}
	if e := s.info.Parameters["client_encoding"]; e != "" {
		return e
	}
	opts := strings.ToLower(s.info.Parameters["options"])
	if i := strings.LastIndex(opts, "client_encoding="); i >= 0 {
		e, _, _ := strings.Cut(opts[i+len("client_encoding="):], " ")
		return e
	}
	return ""
}

// embedsASCII reports whether a client encoding's multibyte characters
// can hold ASCII bytes (PostgreSQL's client-only encodings): COPY data in
// it cannot be cut into fields byte by byte.
func embedsASCII(enc string) bool {
	switch strings.ToLower(strings.NewReplacer("-", "", "_", "", "'", "", `"`, "").Replace(enc)) {
	case "sjis", "shiftjis", "mskanji", "windows932", "win932", "shiftjis2004", "big5", "windows950", "win950",
		"gbk", "windows936", "win936", "cp936", "uhc", "windows949", "win949", "gb18030", "johab":
		return true
	}
	return false
}

// errCopyText is returned for a COPY whose text cannot be read.
var errCopyText = errors.New("COPY cannot be masked: its statement could not be read")

// copyStatement returns the nth COPY TO STDOUT of sql, and the version
// of the parser's tree.
func copyStatement(sql string, nth int) (*pg_query.CopyStmt, int32, error) {
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return nil, 0, errCopyText
	}
	k := 0
	for _, raw := range tree.GetStmts() {
		c := raw.GetStmt().GetCopyStmt()
		if c == nil || c.GetIsFrom() || c.GetFilename() != "" || c.GetIsProgram() {
			continue
		}
		if k == nth {
			return c, tree.GetVersion(), nil
		}
		k++
	}
	return nil, 0, errCopyText
}

// copyQuery returns the SELECT whose columns the COPY sends.
func copyQuery(c *pg_query.CopyStmt, version int32) string {
	if q := c.GetQuery(); q != nil {
		out, err := pg_query.Deparse(&pg_query.ParseResult{Version: version, Stmts: []*pg_query.RawStmt{{Stmt: q}}})
		if err != nil {
			return ""
		}
		return out
	}
	rv := c.GetRelation()
	if rv == nil {
		return ""
	}
	cols := "*"
	if len(c.GetAttlist()) > 0 {
		names := make([]string, 0, len(c.GetAttlist()))
		for _, a := range c.GetAttlist() {
			names = append(names, pgx.Identifier{a.GetString_().GetSval()}.Sanitize())
		}
		cols = strings.Join(names, ", ")
	}
	name := pgx.Identifier{rv.GetRelname()}
	if rv.GetSchemaname() != "" {
		name = pgx.Identifier{rv.GetSchemaname(), rv.GetRelname()}
	}
	return "SELECT " + cols + " FROM ONLY " + name.Sanitize()
}

// copyOptionsOf reads a COPY's options; an option that changes the data
// in a way the masking cannot follow is an error saying so.
func copyOptionsOf(c *pg_query.CopyStmt) (copyOptions, error) {
	o := copyOptions{delim: '\t', null: []byte(`\N`)}
	var delim, quote, escape, null string
	var haveNull bool
	for _, n := range c.GetOptions() {
		d := n.GetDefElem()
		if d == nil {
			return o, errCopyText
		}
		arg := defString(d.GetArg())
		switch name := d.GetDefname(); name {
		case "format":
			switch strings.ToLower(arg) {
			case "text":
			case "csv":
				o.csv = true
			case "binary":
				return o, errors.New("binary COPY cannot be masked in place: its values are in their types' binary forms (COPY in text or CSV format is masked line by line)")
			default:
				return o, errCopyText
			}
		case "delimiter":
			delim = arg
		case "null":
			null, haveNull = arg, true
		case "quote":
			quote = arg
		case "escape":
			escape = arg
		case "header":
			switch strings.ToLower(arg) {
			case "", "true", "on", "1":
				o.header = true
			case "false", "off", "0":
			default:
				return o, fmt.Errorf("COPY with HEADER %s cannot be masked", arg)
			}
		case "force_quote":
			o.forceQuote = true
		case "encoding":
			if e := strings.ToLower(strings.ReplaceAll(arg, "-", "")); e != "utf8" && e != "unicode" {
				return o, fmt.Errorf("COPY with ENCODING %s cannot be masked: only UTF8 output is", arg)
			}
		default:
			return o, fmt.Errorf("COPY with option %s cannot be masked", strings.ToUpper(name))
		}
	}
	if o.csv {
		o.delim, o.null, o.quote = ',', nil, '"'
	}
	for _, opt := range []struct {
		v   string
		dst *byte
	}{{delim, &o.delim}, {quote, &o.quote}, {escape, &o.escape}} {
		if opt.v == "" {
			continue
		}
		if len(opt.v) != 1 {
			return o, errCopyText
		}
		*opt.dst = opt.v[0]
	}
	if o.csv && o.escape == 0 {
		o.escape = o.quote
	}
	if haveNull {
		o.null = []byte(null)
	}
	if o.null == nil {
		o.null = []byte{}
	}
	return o, nil
}

// defString is a DefElem's argument as text: "" when it has none.
func defString(n *pg_query.Node) string {
	switch {
	case n == nil:
		return ""
	case n.GetString_() != nil:
		return n.GetString_().GetSval()
	case n.GetBoolean() != nil:
		if n.GetBoolean().GetBoolval() {
			return "true"
		}
		return "false"
	case n.GetInteger() != nil:
		return fmt.Sprint(n.GetInteger().GetIval())
	}
	return "?"
}
