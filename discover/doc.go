// Package discover proposes a PII classification for a PostgreSQL database by
// sampling it, the logic behind `pgwarden discover`.
//
// Run connects read-only, lists the columns of the user tables, views and
// materialized views from the catalog, and gathers two kinds of evidence per
// column:
//
//   - its name: words such as email, phone or date_of_birth suggest a
//     category (names.go);
//   - its values: up to Config.Sample rows of each relation's text and JSON
//     columns are read (with TABLESAMPLE SYSTEM on large tables, so that not
//     only the oldest pages are seen) and scanned with the content detectors
//     of policy/detect, counting per column the non-null values each
//     detector recognises.
//
// A column is proposed under the detector category with the largest share of
// its sampled values, when that share is at least Config.MinShare, else under
// the category its name suggests ("name only"). Relations the role may not
// read are skipped with a warning rather than failing the run.
//
// The Report prints itself as a policy YAML fragment (version: 1, pii:
// columns:) with the evidence for each entry as a comment, and the columns
// some values matched below the share as trailing comments. Names are guesses
// and shares come from a sample: the proposal is meant to be reviewed.
package discover
