package catalog

import "bytes"

// ddlPrefixes start the CommandComplete tags after which cached names may be
// wrong. CREATE is included because CREATE OR REPLACE VIEW keeps the view's
// OID while it may add columns, and ALTER and DROP of any object because
// ALTER TABLE, ALTER VIEW, ALTER SCHEMA ... RENAME and DROP ... CASCADE reach
// relations. IMPORT FOREIGN SCHEMA creates foreign tables. ALTER ROLE (a
// search_path setting), GRANT and REVOKE (a role's memberships) change the
// role facts cached for new sessions.
var ddlPrefixes = [...][]byte{
	[]byte("CREATE "),
	[]byte("ALTER "),
	[]byte("DROP "),
	[]byte("IMPORT FOREIGN SCHEMA"),
	[]byte("GRANT"),
	[]byte("REVOKE"),
}

// IsDDLTag reports whether a CommandComplete tag comes from a statement that
// may change relation or column names or role facts (CREATE, ALTER or DROP of
// any object, IMPORT FOREIGN SCHEMA, GRANT, REVOKE, or a DO block, which
// commonly runs DDL), in which case
// the proxy should call Resolver.Invalidate. It does not allocate.
//
// Misses, left to the TTL: DDL run inside a function or procedure, and
// CREATE TABLE AS, SELECT INTO and CREATE MATERIALIZED VIEW, which report
// "SELECT n". Those three only create relations, whose new OIDs are not
// cached yet, so missing them loses nothing.
//
// Inside a transaction block, the catalog pgwarden reads through its own pool
// shows the DDL only once the transaction commits; a caller that saw a DDL tag
// inside a block should invalidate again when ReadyForQuery reports the block
// has ended.
func IsDDLTag(tag []byte) bool {
	for _, p := range ddlPrefixes {
		if bytes.HasPrefix(tag, p) {
			return true
		}
	}
	return string(tag) == "DO"
}
