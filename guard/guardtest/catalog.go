package guardtest

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgwarden/pgwarden/proxy"
	"github.com/pgwarden/pgwarden/proxy/catalog"
)

// TextOID is the type OID of text, the type of every column Table.Field
// describes.
const TextOID = 25

// Table is a relation of a Catalog: its columns are numbered from 1 in the
// order given.
type Table struct {
	OID     uint32
	Schema  string
	Name    string
	Columns []string
	// RelKind is pg_class.relkind; 'r' when zero.
	RelKind byte
}

// Field describes column name of t as a RowDescription does, in text
// format; it panics on a column t does not have.
func (t Table) Field(name string) pgproto3.FieldDescription {
	for i, c := range t.Columns {
		if c == name {
			return pgproto3.FieldDescription{Name: []byte(name), TableOID: t.OID, TableAttributeNumber: uint16(i + 1),
				DataTypeOID: TextOID, DataTypeSize: -1, TypeModifier: -1}
		}
	}
	panic(fmt.Sprintf("guardtest: table %s.%s has no column %q", t.Schema, t.Name, name))
}

// Fields describes the named columns of t, in order.
func (t Table) Fields(names ...string) []pgproto3.FieldDescription {
	out := make([]pgproto3.FieldDescription, len(names))
	for i, n := range names {
		out[i] = t.Field(n)
	}
	return out
}

// Expression describes a result column computed by an expression (no table
// behind it), as PostgreSQL does: table OID and attribute number 0.
func Expression(name string) pgproto3.FieldDescription {
	return pgproto3.FieldDescription{Name: []byte(name), DataTypeOID: TextOID, DataTypeSize: -1, TypeModifier: -1}
}

// Catalog is a guard.Resolver that answers from its tables, with no
// PostgreSQL: what the guard asks of the catalog (columns, relations'
// schemas, the role's search_path, memberships, estimates) comes from maps
// a test fills. Safe for concurrent use once built.
type Catalog struct {
	mu     sync.Mutex
	tables map[uint32]Table
	// Views maps a view's OID to its definition (pg_get_viewdef).
	Views map[uint32]string
	// SearchPath is every role's search_path setting; "" for none.
	SearchPath string
	// Memberships maps a user to the roles it belongs to.
	Memberships map[string][]string
	// Estimates maps a query's text to the planner's row estimate; a
	// query not there cannot be estimated.
	Estimates map[string]int64
	// Explained maps an employee to the keys they have a recorded reason
	// to see (explained access).
	Explained map[string][]string
}

// NewCatalog returns a Catalog holding tables.
func NewCatalog(tables ...Table) *Catalog {
	c := &Catalog{tables: make(map[uint32]Table)}
	for _, t := range tables {
		c.tables[t.OID] = t
	}
	return c
}

// Column implements guard.Resolver.
func (c *Catalog) Column(_ context.Context, tableOID uint32, attNum int16) (catalog.Column, error) {
	c.mu.Lock()
	t, ok := c.tables[tableOID]
	c.mu.Unlock()
	if !ok || attNum < 0 || int(attNum) > len(t.Columns) {
		return catalog.Column{}, catalog.ErrNotFound
	}
	kind := t.RelKind
	if kind == 0 {
		kind = 'r'
	}
	col := catalog.Column{Schema: t.Schema, Table: t.Name, TableOID: t.OID, AttNum: attNum, RelKind: kind, Name: "*"}
	if attNum > 0 {
		col.Name = t.Columns[attNum-1]
	}
	return col, nil
}

// ViewDefinition implements guard.Resolver.
func (c *Catalog) ViewDefinition(_ context.Context, oid uint32) (string, error) {
	if def, ok := c.Views[oid]; ok {
		return def, nil
	}
	return "", catalog.ErrNotFound
}

// Functions implements guard.Resolver: a Catalog knows no functions.
func (c *Catalog) Functions(context.Context, string, string) ([]catalog.Function, error) {
	return nil, nil
}

// RelationSchemas implements guard.Resolver.
func (c *Catalog) RelationSchemas(_ context.Context, name string) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, t := range c.tables {
		if strings.EqualFold(t.Name, name) {
			out = append(out, t.Schema)
		}
	}
	return out, nil
}

// RoleSearchPath implements guard.Resolver.
func (c *Catalog) RoleSearchPath(context.Context, string, string) (string, bool, error) {
	return c.SearchPath, c.SearchPath != "", nil
}

// RoleMemberships implements guard.Resolver.
func (c *Catalog) RoleMemberships(_ context.Context, user string, roles []string) ([]string, error) {
	var out []string
	for _, r := range c.Memberships[user] {
		for _, w := range roles {
			if r == w {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// Estimate implements guard.Resolver.
func (c *Catalog) Estimate(_ context.Context, _ string, _ []string, query string, _ *proxy.Params) (int64, error) {
	if n, ok := c.Estimates[query]; ok {
		return n, nil
	}
	return 0, fmt.Errorf("guardtest: no estimate for %q", query)
}

// ExplainedKeys implements guard.Resolver.
func (c *Catalog) ExplainedKeys(_ context.Context, _, employee string) ([]string, error) {
	return c.Explained[employee], nil
}
