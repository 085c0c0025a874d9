// Package policy reads the DBA's policy file and answers the questions the
// counting code asks about it: is this column personal data, and of which
// category; is it excluded from counting; which content detectors run; and
// which rules apply to a statement, and whether its counts exceed them.
//
// What flows in: a YAML file, once, at start or on reload (Parse, Load), or
// the built-in Default. What flows out: an immutable *Policy. The proxy
// resolves each result column to schema.table.column through the catalog and
// calls Classify; columns the policy does not declare are left to the
// content detectors, which another package compiles from Detectors. For
// each statement the caller builds a Context (who, from where, when, which
// tables, which kind of statement) and asks each of Rules whether it
// Applies; while rows flow, and for windows once they are summed, it asks
// Exceeded with the Figures of the rule's Scope. The package is pure logic:
// no network, no wire protocol, no clock (the caller passes the time).
//
// Parse reports every error of a file (unknown keys, bad matches, limits,
// scopes, ...) as an ErrorList of *Error, each carrying the file name, line
// and column; a file that fails to parse yields no Policy, so a broken file
// never replaces a good one. A policy file replaces Default whole.
//
// The file format (PII columns, detectors, groups, rules, canaries,
// explained access, service accounts, norms), what each rule condition
// measures and the built-in policy are documented in docs/policy.md at the
// top of the repository.
package policy
