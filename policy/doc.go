// Package policy reads the DBA's policy file and answers the questions the
// counting code asks about it: is this column personal data, and of which
// category; is it excluded from counting; which content detectors run.
//
// What flows in: a YAML file, once, at start or on reload (Parse, Load), or
// the built-in Default. What flows out: an immutable *Policy. The proxy
// resolves each result column to schema.table.column through the catalog and
// calls Classify; columns the policy does not declare are left to the
// content detectors, which another package compiles from Detectors. The
// package is pure logic: no network, no wire protocol, no clock.
//
// # File format
//
//	version: 1                        # required
//	pii:
//	  columns:                        # declared PII columns
//	    - match: public.customers.email
//	      category: email
//	    - match: "*.customers.phone"
//	      category: phone
//	    - match: crm.*.ssn
//	      category: national_id
//	    - match: public.customers.notes
//	      category: custom:free_text
//	  detectors:
//	    enabled: true                 # default true
//	    categories: [email, phone, national_id, card, iban, ip]   # default all
//	    custom:
//	      - name: employee_number
//	        category: custom:employee_number
//	        pattern: 'EMP-[0-9]{6}'   # Go regexp syntax
//	  exclude:                        # never counted, even if detectors match
//	    - match: public.settings.*
//
// Categories are email, name, phone, national_id, card, address,
// date_of_birth, ip, iban, and custom:<name> (letters, digits, '_', '-').
// Built-in detectors exist for email, phone, national_id, card, iban and ip;
// an explicit empty categories list runs only the custom detectors.
//
// A match is schema.table.column, compared case-sensitively with the names
// the catalog stores (PostgreSQL folds unquoted SQL identifiers to lower
// case, so write public.customers.email, not Public.Customers.Email, unless
// the table was created with quoted mixed-case names). A part in double
// quotes is taken literally, dots and glob characters included, with ""
// standing for a quote: "my.schema".t.c. An unquoted part is a glob: '*'
// matches any run of characters, '?' one character, [abc], [a-z] and [!abc]
// or [^abc] a class, and '\' escapes the next character. A YAML value that
// starts with '*' or '"' must itself be quoted: match: '"my.schema".t.c',
// match: "*.customers.phone".
//
// Classify looks a column up in this order: excluded columns are never
// declared; then exact entries (no glob in any part); then glob entries in
// file order, the first match winning. Results are cached in a bounded LRU,
// so the per-row cost is a map hit.
//
// # Errors
//
// Unknown keys, unknown categories, malformed matches and globs, regular
// expressions that do not compile, repeated keys, YAML aliases, and
// duplicate entries (the same match twice, whatever its category) are all
// errors. Parse reports every one of them, as an ErrorList of *Error
// each carrying the file name, line and column; a file that fails to parse
// yields no Policy, so a broken file never replaces a good one.
//
// The root mapping is open to later sections (subjects, rules, actions) but
// today any key other than version and pii is an error.
package policy
