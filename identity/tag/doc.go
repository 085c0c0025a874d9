// Package tag is the signed identity tag with which an application that
// shares one database role among its users (a service account behind a
// connection pool) names the employee a statement is for, so that pgwarden
// counts it against them rather than against the service account.
//
// A tag is signed with HMAC-SHA256 under a key the application holds and
// pgwarden is given (the policy's service_accounts say where it is read
// from; the key is never in the policy file). Whoever can type SQL on the
// service account's connections but does not hold the key cannot name
// anyone: an unsigned or badly signed tag is ignored, and the statement
// counts against the service account itself.
//
// # Per statement: a sqlcommenter comment
//
// The tag is a comment at the start or at the end of the statement text
// (before a final semicolon), in the sqlcommenter format: key='value' pairs
// separated by commas, keys and values URL-encoded, a quote in a value
// escaped with a backslash, keys in lexical order:
//
//	SELECT email FROM customers WHERE id = $1 /*pgwarden_sig='9f2c…',pgwarden_ts='1767225600',pgwarden_user='alice'*/
//
// pgwarden_user is the employee, pgwarden_ts the signing time in Unix
// seconds, and pgwarden_sig the lowercase hex HMAC-SHA256, under the key, of
//
//	"pgwarden_tag_v2" NUL user NUL conn NUL ts NUL statement
//
// where conn is the decimal backend process id the connection's driver
// reports (pgx's PgConn.PID, libpq's PQbackendPID: pgwarden's own, unique
// among its live sessions), and statement is the text without the
// comment, with leading and trailing white space (space, tab, newline,
// carriage return, form feed, vertical tab) removed (a final semicolon after the comment is
// kept: "SELECT 1 /*…*/;" signs "SELECT 1;"). The signature binds the tag to
// that statement on that connection: lifted onto another statement, or
// replayed on another connection (someone who reads it in
// pg_stat_activity), it no longer matches. The pairs may
// come in any order, and other sqlcommenter keys (traceparent, route) may
// share the comment; they are not signed. A comment anywhere else (in the
// middle, inside a string literal, after a line comment) is not a tag.
//
// Sign appends a tag to a statement; Comment returns the comment alone.
//
// # Per session or transaction: application_name
//
//	SET application_name = 'pgwarden:alice:1767225600:4be1…'
//	SET LOCAL application_name = 'pgwarden:alice:1767225600:4be1…'
//
// names the employee of the statements that follow, with the signature
// the lowercase hex HMAC-SHA256 of
//
//	"pgwarden_application_name_v2" NUL user NUL conn NUL ts
//
// and user URL-encoded as in the comment. ApplicationName returns the value.
// This form is bound to the connection but not to any statement, and it
// names the employee for the skew after its signing time only: set it
// again, best with SET LOCAL in each transaction. The comment is the
// stronger form.
//
// # Time
//
// A tag is accepted while its timestamp is within the service account's
// skew of pgwarden's clock (DefaultSkew, 5 minutes, unless the policy says
// otherwise), before or after.
//
// # Signing, from an application
//
//	c, err := pool.Acquire(ctx)
//	...
//	q := tag.Sign(key, "alice", c.Conn().PgConn().PID(), time.Now(), "SELECT email FROM customers WHERE id = $1")
//	rows, err := c.Query(ctx, q, id)
//
// The package is internal to pgwarden's module and uses the standard
// library only: a Go application outside the module copies Sign (some
// forty lines); another language follows the algorithm above, checked
// against the test vectors in tag_test.go.
package tag
