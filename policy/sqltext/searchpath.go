package sqltext

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// PathChange is a change of search_path a statement text makes, with SET,
// RESET or set_config().
type PathChange struct {
	// Schemas is the new path ("$user" kept as written); nil with Reset.
	Schemas []string
	// Reset returns to the session's default path.
	Reset bool
	// Local lasts until the end of the transaction (SET LOCAL, or
	// set_config(..., true)).
	Local bool
	// Unknown is set when the new value is not a constant
	// (set_config('search_path', some_expression, ...)).
	Unknown bool
}

// searchPathChange returns the last search_path change of a text, or nil.
func searchPathChange(tree *pg_query.ParseResult) *PathChange {
	var last *PathChange
	for _, raw := range tree.GetStmts() {
		n := raw.GetStmt()
		if v := n.GetVariableSetStmt(); v != nil && strings.EqualFold(v.GetName(), "search_path") {
			c := &PathChange{Local: v.GetIsLocal()}
			switch v.GetKind() {
			case pg_query.VariableSetKind_VAR_SET_VALUE:
				for _, a := range v.GetArgs() {
					c.Schemas = append(c.Schemas, ParseSearchPath(a.GetAConst().GetSval().GetSval())...)
				}
			case pg_query.VariableSetKind_VAR_SET_DEFAULT, pg_query.VariableSetKind_VAR_RESET:
				c.Reset = true
			default:
				c.Unknown = true
			}
			last = c
			continue
		}
		if c := setConfigCall(n.ProtoReflect()); c != nil {
			last = c
		}
	}
	return last
}

// setConfigCall finds set_config('search_path', value, is_local) anywhere
// in a statement.
func setConfigCall(m protoreflect.Message) *PathChange {
	if !m.IsValid() {
		return nil
	}
	if f, ok := m.Interface().(*pg_query.FuncCall); ok && funcName(f) == "set_config" {
		args := f.GetArgs()
		if len(args) == 3 && strings.EqualFold(args[0].GetAConst().GetSval().GetSval(), "search_path") {
			c := &PathChange{}
			if v := args[1].GetAConst(); v != nil && v.GetSval() != nil {
				c.Schemas = ParseSearchPath(v.GetSval().GetSval())
			} else {
				c.Unknown = true
			}
			if b := args[2].GetAConst(); b == nil || b.GetBoolval() == nil {
				c.Unknown = true
			} else {
				c.Local = b.GetBoolval().GetBoolval()
			}
			return c
		}
	}
	var found *PathChange
	m.Range(func(fd protoreflect.FieldDescriptor, val protoreflect.Value) bool {
		switch {
		case fd.IsList():
			if fd.Kind() == protoreflect.MessageKind {
				list := val.List()
				for i := 0; i < list.Len(); i++ {
					if c := setConfigCall(list.Get(i).Message()); c != nil {
						found = c
					}
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			if c := setConfigCall(val.Message()); c != nil {
				found = c
			}
		}
		return true
	})
	return found
}

// ParseSearchPath splits a search_path value as PostgreSQL does: a comma
// separated list of identifiers, unquoted ones folded to lower case,
// double-quoted ones kept as written ("" standing for one quote).
func ParseSearchPath(v string) []string {
	var out []string
	for i := 0; i < len(v); {
		for i < len(v) && (v[i] == ' ' || v[i] == '\t' || v[i] == '\n' || v[i] == '\r') {
			i++
		}
		if i >= len(v) {
			break
		}
		var name strings.Builder
		if v[i] == '"' {
			i++
			for i < len(v) {
				if v[i] == '"' {
					if i+1 < len(v) && v[i+1] == '"' {
						name.WriteByte('"')
						i += 2
						continue
					}
					i++
					break
				}
				name.WriteByte(v[i])
				i++
			}
		} else {
			start := i
			for i < len(v) && v[i] != ',' {
				i++
			}
			name.WriteString(strings.ToLower(strings.TrimSpace(v[start:i])))
		}
		for i < len(v) && v[i] != ',' {
			i++
		}
		i++ // the comma
		if name.Len() > 0 {
			out = append(out, name.String())
		}
	}
	return out
}
