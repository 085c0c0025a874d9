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
//	mode: enforce                     # or shadow; default enforce
//	timezone: Europe/Paris            # for hours and days; default UTC
//	groups:
//	  support: [alice, bob]           # employees by name
//	  analysts: {roles: [analyst]}    # members of PostgreSQL roles
//	  oncall: {members: [carol], roles: [dba]}
//	rules:
//	  - name: email-bulk              # required, unique: letters, digits, '_', '.', '-'
//	    description: free text
//	    subjects: [group:support, alice, role:analyst]   # default ["*"], everyone
//	    except: [group:oncall]
//	    scope: statement              # statement (default), session, 1m, 10m, 1h, 24h
//	    when:                         # required; every condition given must hold
//	      pii_values: {email: 100}    # or one limit on the total: pii_values: 1000
//	      tables: [public.customers, "crm.*"]
//	      estimated_rows: 1000          # the planner expects more rows than this
//	    action: alert                 # required: log, alert, redact, hold, block, kill, quarantine
//	    redact: mask                  # action redact: mask (default) or "null"
//	    hold_timeout: 5m              # action hold: blocked when not approved in time
//	    shadow: false                 # true: only log "would alert"
//	    severity: high                # low, medium, high, critical
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
// # Rules
//
// A rule fires when its subjects include the employee, its except does not,
// and every condition of its when holds. Conditions are of two sorts.
//
// Thresholds compare counts with a limit and hold when the count is greater
// than the limit (equal does not fire): pii_values (a limit on the total of
// all categories, or a mapping of limits per category, such as {email: 100,
// national_id: 1}, where custom:<name> categories are allowed and "any"
// stands for the total), pii_rows (rows holding PII), distinct_subjects,
// unexplained_rows and sequential_rows (see Explained access), rows, and bytes (sent to the client; an integer, or a string with a unit:
// B, kB, MB, GB, TB in powers of 1000, KiB, MiB, GiB, TiB in powers of
// 1024, such as 50MB). Limits are non-negative integers. A rule's
// thresholds are compared with the counts of its scope: the statement, the
// session so far, or the employee's sliding window of 1m, 10m, 1h or 24h.
//
// Context conditions are known before the statement runs: tables (the
// statement touches or names any of these schema.table globs, with the
// syntax of match), statements (its kind is any of these), hours (local
// time of day in the policy's timezone, "22:00-06:00", including the start
// and excluding the end, wrapping midnight when the end is not after the
// start; or a list of such ranges), days (mon..sun, the local weekday; days
// and hours are checked separately, so days: [fri] with hours: 22:00-06:00
// holds early and late on Friday, not early on Saturday), client and
// not_client (the client address is, or is not, in any of these CIDR
// prefixes or addresses; an unknown address, from a Unix socket, is in
// none), application and not_application (application_name matches, or
// does not match, any of these globs: '*', '?', classes and '\' as in
// match; "" is an empty application_name), estimated_rows (PostgreSQL's
// planner expects the statement to return more rows than this: EXPLAIN,
// planned as the employee, for a SELECT, a DECLARE of a cursor or a COPY TO
// STDOUT without parameters, and not for one costly to plan: more than 24
// relations or 100 SELECTs, see sqltext.MaxPlannedRelations; statements
// it cannot estimate do not match, and are still subject to thresholds), sessions (the employee has more
// sessions open than this, across all clients: a leak split over parallel
// sessions), service_account (see Service accounts). A rule with context
// conditions only is a context rule, decided before the statement runs;
// its scope must stay statement.
//
// Statement kinds, as the caller classifies SQL: select, copy_to_stdout,
// copy_to_file, copy_to_program, copy_from, create_table_as (also SELECT
// INTO, CREATE MATERIALIZED VIEW, and writing into a large object with
// lo_from_bytea, lo_put or lowrite), insert_select (also inside WITH, and
// INSERT ... VALUES computed by subqueries), lo_export, dblink
// (dblink functions and postgres_fdw foreign tables), function_call (the
// fast-path protocol), ddl, dml and other. server_egress is short for
// copy_to_file, copy_to_program, lo_export and dblink: data that leaves
// through the server, where pgwarden cannot count it.
//
// Subjects: "*" is everyone; a bare name is that employee (exact and
// case-sensitive, as pgwarden identifies employees); group:NAME a member of
// the group; role:NAME a member of that PostgreSQL role, or the employee of
// that name. A group lists employees by name (a list, or members:) and
// PostgreSQL roles (roles:) whose members belong to it, as role:NAME
// subjects would (the employee of the role's name included). The caller resolves
// role memberships, direct or inherited, for the roles GroupRoles lists, from
// the grants (pg_auth_members) alone: a superuser is a member of the roles
// granted to them, not of every role.
//
// Actions, from the mildest: log, alert, redact (the result goes on, but
// the PII values of each later row reach the client masked, j***@example.com
// and ***-**-1234, or as NULL with redact: null), hold (the result pauses,
// nothing more leaves the database, until security approves; a denial or
// hold_timeout, default 5m, blocks it), block (refuse the statement, or stop
// its result), kill (end the session), quarantine (end the session and
// refuse the employee's new ones until a DBA releases them). When several
// rules fire the caller acts on the strongest (Action.Severity). With
// mode: shadow, or shadow: true on a rule, the rule only logs or alerts
// "would <action>". A rule's severity defaults to medium for log, alert and
// redact, high for hold and block, critical for kill and quarantine.
//
// # Canaries
//
//	canaries:
//	  values: [canary.7f3a@example.com, "+1 415 555 0199"]   # 6 characters or more
//	  block_at: 2                     # default 2
//	  except: [backup_svc]            # subjects and except, as rules take
//
// Canaries are honeytoken values planted in the data (rows no legitimate
// work touches). A session that receives one is alerted (rule "canary");
// one that reaches block_at within the session is blocked before the
// value arrives (rule "canary-bulk"). A value equal to a canary counts, and
// so does a canary packed into a longer value (string_agg, json, a COPY
// line). Canaries watch everyone, or the employees their subjects name,
// less those their except names, read as a rule's (names, group:NAME,
// role:NAME, "*"): except: [backup_svc] lets the nightly backup, which by
// definition copies the canary rows, run unwatched by them.
//
// # Explained access
//
//	explained_access:
//	  table: public.customers         # whose rows need a reason
//	  key: id                         # the table's key column
//	  query: "SELECT customer_id FROM tickets WHERE assignee = $1 AND status = 'open'"
//	  refresh: 1m                     # how long an employee's keys are reused
//
// The query, run with the employee's name as $1, lists the keys of the
// rows they have a reason to see. A result row of the table whose key is
// not listed is unexplained; so is every row of a result that has columns
// of the table but not its key. The threshold unexplained_rows limits them
// in a rule, apart from explained ones. Without a query, table and key
// still define the key space for sequential_rows: rows whose numeric key
// is within 2 of one the employee read in the last hour, a sweep (paging
// by id, ranges, one customer after another).
//
// # Service accounts
//
//	service_accounts:
//	  - role: crm_app                 # the database role the application shares
//	    key_env: PGWARDEN_CRM_KEY     # or key_file: /etc/pgwarden/crm.key
//	    applications: ["crm-*"]       # application_name globs it connects with
//	    clients: ["10.1.0.0/16"]      # addresses it connects from
//	    max_skew: 5m                  # accepted distance of a tag's time (default 5m)
//
// An application behind a connection pool runs every statement as one
// role; it may name the employee each statement is for with a tag signed
// by a key it holds (package internal/tag: a sqlcommenter comment per
// statement, or SET application_name for what follows). pgwarden reads the
// key from the environment variable or file named; the policy never holds
// it. A statement with a valid tag is counted, limited, normed and
// audited as its employee's; one without, or with a tag that is malformed,
// badly signed or out of time (ignored, and alerted), as the role's own.
// A session whose application or client address is outside the lists is
// unusual: a person using the service's password.
//
// The condition service_account holds on statements of a service
// account's sessions only, when any of its values does: any, tagged (a
// valid tag names the employee), untagged (none does), bad_tag (a tag was
// rejected), unusual. A service account used interactively:
//
//	rules:
//	  - name: service-account-interactive   # PII without a tag: blocked
//	    when: {service_account: untagged, pii_values: 0}
//	    action: block
//	  - name: service-account-unusual
//	    when: {service_account: unusual}
//	    action: alert
//
// # Norms
//
//	norms:
//	  enabled: true                   # default true when the section is given
//	  learning_days: 7                # alerts only, for each employee's first days
//	  min_active_days: 5              # before that, the peer group's norm is used
//	  history_days: 30
//	  max_daily_rise: 0.25            # a norm rises at most 25% a day: ramps are not learned
//	  alert_score: 1                  # anomalies scoring this or more are alerted
//	  block_score: 0                  # ... blocked until their window ends (0: never)
//	  statement_factor: 0             # stop a statement past N x the usual 10-minute high
//	  statement_floor: 500            # ... but never below this
//	  org_change_employees: 3         # a novelty new to 3 employees, each within
//	  org_change_span: 1h             # ... 1h of the previous, is one org_change alert
//	  org_change_hold: 15m            # an employee's novelty alert waits this long for others
//	  except: [group:jobs]            # subjects and except, as rules take
//	  shadow: false
//
// Norms are learned per employee (package policy/norm): volume per 10
// minutes, hour and day against the employee's own history (or, for a
// new hire or after a role change, their peer group's: the first policy
// group they belong to), activity outside their usual hours, a first
// table, client address or application, a PII category the employee and
// their peer group never read, and drift over several days. Novelties are
// only ever alerted. The same novelty shared by many employees at once (an
// office's client addresses renumbered into a new /24, an application
// rolled out, a new table everyone starts using) is one organisation-level
// incident, kind org_change, alerted once; the employees' own novelty
// decisions are then recorded (action log) without notice. Folding is per
// pgwarden instance, in memory: with several instances, each folds what
// it sees. Norms watch everyone, or the employees their subjects name,
// less those their except names: a job that runs once a month (a
// month-end batch) has no norm to break, and is left to rules.
//
// # Built-in policy
//
// Without a policy file pgwarden runs Default, whose text is DefaultYAML:
// no declared columns, every built-in content detector on, and these rules,
// generous, alerting before blocking:
//
//   - server-egress: statements [server_egress], block.
//   - statement-pii-alert: more than 1000 PII values in one statement, alert.
//   - statement-pii-block: more than 10000 in one statement, block.
//   - session-pii-alert: more than 20000 in one session, alert.
//   - daily-pii-alert: more than 50000 in 24 hours, alert.
//   - daily-pii-block: more than 200000 in 24 hours, block.
//
// and norms learned per employee, alerting only (block_score 0).
//
// A policy file replaces the built-in policy whole: a file without rules has
// none.
//
// # Errors
//
// Unknown keys, unknown categories, malformed matches and globs, regular
// expressions that do not compile, repeated keys, YAML aliases, and
// duplicate entries (the same match twice, whatever its category) are all
// errors; so are, in groups and rules, rule and group names defined twice,
// group:NAME subjects naming no group, members and roles that are not
// strings, negative or non-integer limits, unknown units, times, days,
// statement kinds, actions, scopes and severities, bad CIDR prefixes and
// addresses, a bad timezone, empty condition lists, a rule without any
// condition, and a scope other than statement on a rule without
// thresholds. Parse reports every one of them, as an ErrorList of *Error
// each carrying the file name, line and column; a file that fails to parse
// yields no Policy, so a broken file never replaces a good one.
package policy
