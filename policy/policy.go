package policy

import (
	"fmt"
	"github.com/pgwarden/pgwarden/internal/shardlru"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/pgwarden/pgwarden/policy/pii"
)

// cacheSize bounds the Classify cache: enough for the columns of a large
// schema, so that steady-state lookups are a map hit.
const cacheSize = 8192

// maxFileSize bounds what Load reads; a policy is a few kilobytes.
const maxFileSize = 4 << 20

// Policy is a parsed, validated policy file. It is immutable and safe for
// concurrent use; a reload builds a new Policy and swaps it in whole.
type Policy struct {
	name      string
	exact     map[colKey]pii.Category
	globs     []columnRule // in file order
	exclExact map[colKey]struct{}
	exclGlobs []*namePattern
	detectors DetectorConfig
	canaries  Canaries
	norms     NormConfig
	explained ExplainedAccess
	masking   Masking
	cache     *shardlru.Cache[colKey, verdict]

	shadow     bool // mode: shadow
	loc        *time.Location
	groups     map[string]*group
	rules      []*Rule // in file order
	groupRoles []string
	services   []*ServiceAccount // in file order
}

// columnRule is a declared column whose match has a glob.
type columnRule struct {
	pattern  *namePattern
	category pii.Category
}

// verdict is what the cache remembers about a column.
type verdict struct {
	category pii.Category // "" when the column is not declared
	excluded bool
}

// DetectorConfig says which content detectors run. It is plain data; the
// detector package compiles it.
type DetectorConfig struct {
	// Enabled turns content detection on; declared columns are counted
	// either way.
	Enabled bool
	// Categories lists the built-in detectors to run, by category name.
	Categories []pii.Category
	// Custom are the policy's own regular-expression detectors.
	Custom []CustomDetector
}

// CustomDetector is a policy-defined detector: values matching Pattern (Go
// regexp syntax, already checked to compile) count as Category.
type CustomDetector struct {
	Name     string
	Category pii.Category
	Pattern  string
}

func newPolicy(name string) *Policy {
	cache, err := shardlru.New[colKey, verdict](cacheSize)
	if err != nil {
		panic(err) // only for a non-positive size
	}
	return &Policy{
		name:      name,
		exact:     make(map[colKey]pii.Category),
		exclExact: make(map[colKey]struct{}),
		cache:     cache,
		loc:       time.UTC,
		groups:    make(map[string]*group),
	}
}

// defaultDetectors are the detector settings of a file that gives none:
// every built-in content detector on.
func defaultDetectors() DetectorConfig {
	return DetectorConfig{
		Enabled:    true,
		Categories: pii.Detectable(),
	}
}

// DefaultYAML is the built-in policy, as a file: what runs when no policy
// file is given, and a starting point for one. Default parses it.
const DefaultYAML = `# pgwarden's built-in policy: what runs when no policy file is given.
# Start your own from it; ` + "`pgwarden policy check FILE`" + ` validates one.
version: 1
mode: enforce                   # shadow: every rule only logs "would <action>"
timezone: UTC                   # for hours and days conditions

pii:
  detectors:
    enabled: true               # every built-in content detector; no declared columns

rules:
  # COPY ... TO a file or a program, lo_export and dblink or postgres_fdw
  # move data through the server, where pgwarden cannot count it.
  - name: server-egress
    description: data leaves through the server, uncounted
    when:
      statements: [server_egress]
    action: block

  # One statement returning a lot of PII: alert, then block.
  - name: statement-pii-alert
    description: more than 1000 PII values in one statement
    when:
      pii_values: 1000
    action: alert
  - name: statement-pii-block
    description: more than 10000 PII values in one statement
    when:
      pii_values: 10000
    action: block

  # A session, then a day of work, adding up to a lot of PII.
  - name: session-pii-alert
    description: more than 20000 PII values in one session
    scope: session
    when:
      pii_values: 20000
    action: alert
  - name: daily-pii-alert
    description: more than 50000 PII values in 24 hours
    scope: 24h
    when:
      pii_values: 50000
    action: alert
  - name: daily-pii-block
    description: more than 200000 PII values in 24 hours
    scope: 24h
    when:
      pii_values: 200000
    action: block

# Learned norms: each employee's own volume, hours, tables, clients and
# applications, and slow drift over days. Out of the box they only alert;
# set block_score (and statement_factor) once their alerts are trusted.
norms:
  learning_days: 7
  block_score: 0
`

// Default returns the built-in policy, DefaultYAML: no declared columns,
// nothing excluded, every built-in content detector on, and rules that
// block egress through the server and alert, then block, on large amounts
// of PII per statement, session and day.
func Default() *Policy {
	p, err := Parse("<default>", []byte(DefaultYAML))
	if err != nil {
		panic("policy: DefaultYAML does not parse: " + err.Error()) // a test parses it
	}
	return p
}

// Load reads and parses the policy file at path.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if len(data) > maxFileSize {
		return nil, ErrorList{{File: path, Msg: fmt.Sprintf("file larger than %d bytes", maxFileSize)}}
	}
	return Parse(path, data)
}

// Name is the file name the policy was parsed from.
func (p *Policy) Name() string { return p.name }

// Classify returns the category of a column the policy declares. Exact
// entries win over globs; among globs the first in file order wins. An
// excluded column is never declared. Names are compared case-sensitively,
// as the catalog stores them. Results are cached, so repeated lookups of
// the same column are a map hit and do not allocate.
func (p *Policy) Classify(schema, table, column string) (pii.Category, bool) {
	v := p.lookup(colKey{schema, table, column})
	return v.category, v.category != ""
}

// ColumnNamed returns the category of a column the policy declares under
// this name, in any schema and table (exact entries first, then globs in
// file order), for a caller that knows a column's name but not its table.
// Exact names are compared without regard to case: the caller may have
// read the name from SQL text, where unquoted names are folded.
func (p *Policy) ColumnNamed(column string) (pii.Category, bool) {
	for k, c := range p.exact {
		if strings.EqualFold(k.column, column) {
			return c, true
		}
	}
	for _, r := range p.globs {
		if r.pattern.parts[2].match(column) {
			return r.category, true
		}
	}
	return "", false
}

// AnyColumnDeclared returns the category of a column the policy declares
// (the first glob in file order, else the first exact entry by name), and
// false when it declares none.
func (p *Policy) AnyColumnDeclared() (pii.Category, bool) {
	if len(p.globs) > 0 {
		return p.globs[0].category, true
	}
	var first *colKey
	var cat pii.Category
	for k, c := range p.exact {
		if first == nil || k.schema+"\x00"+k.table+"\x00"+k.column < first.schema+"\x00"+first.table+"\x00"+first.column {
			first, cat = &k, c
		}
	}
	return cat, first != nil
}

// Excluded reports whether the policy excludes a column from counting, so
// that neither its declaration nor content detectors count its values.
func (p *Policy) Excluded(schema, table, column string) bool {
	return p.lookup(colKey{schema, table, column}).excluded
}

// Detectors returns the content detector settings. The slices are copies.
func (p *Policy) Detectors() DetectorConfig {
	d := p.detectors
	d.Categories = slices.Clone(d.Categories)
	d.Custom = slices.Clone(d.Custom)
	return d
}

func (p *Policy) lookup(k colKey) verdict {
	if v, ok := p.cache.Get(k); ok {
		return v
	}
	v := p.resolve(k)
	p.cache.Add(k, v)
	return v
}

// resolve computes a column's verdict without the cache.
func (p *Policy) resolve(k colKey) verdict {
	if _, ok := p.exclExact[k]; ok {
		return verdict{excluded: true}
	}
	for _, g := range p.exclGlobs {
		if g.match(k) {
			return verdict{excluded: true}
		}
	}
	if c, ok := p.exact[k]; ok {
		return verdict{category: c}
	}
	for _, r := range p.globs {
		if r.pattern.match(k) {
			return verdict{category: r.category}
		}
	}
	return verdict{}
}
