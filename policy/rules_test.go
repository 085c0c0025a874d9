package policy

import (
	"errors"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgwarden/pgwarden/policy/pii"
)

// parseErrors parses src and returns its errors, one line each without the
// "p.yaml:" prefix; it fails the test when src parses.
func parseErrors(t *testing.T, src string) []string {
	t.Helper()
	p, err := Parse("p.yaml", []byte(src))
	if err == nil {
		t.Fatal("Parse succeeded, want errors")
	}
	if p != nil {
		t.Error("Parse returned a Policy along with errors")
	}
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("error %T is not an ErrorList", err)
	}
	var got []string
	for _, line := range strings.Split(err.Error(), "\n") {
		got = append(got, strings.TrimPrefix(line, "p.yaml:"))
	}
	if len(got) != len(list) {
		t.Errorf("ErrorList has %d errors, printed %d lines", len(list), len(got))
	}
	return got
}

func ruleByName(t testing.TB, p *Policy, name string) *Rule {
	t.Helper()
	for _, r := range p.Rules() {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no rule %q", name)
	return nil
}

const rulesPolicy = `version: 1
timezone: Europe/Paris
groups:
  support: [alice, bob]
  analysts: {roles: [analyst]}
  oncall: {members: [carol], roles: [dba]}
  empty: []
rules:
  - name: everything
    description: every condition at once
    subjects: [group:support, dave, role:auditor, group:analysts]
    except: [group:oncall, bob]
    scope: 1h
    when:
      pii_values: {email: 100, custom:free_text: 5, any: 1000, national_id: 0}
      pii_rows: 500
      distinct_subjects: 200
      rows: 100_000
      bytes: 50MB
      tables: [public.customers, "crm.*", '"Sales.EU".l?ads']
      statements: [select, server_egress, lo_export]
      hours: ["22:00-06:00", "12:00-13:30"]
      days: [sat, sun, mon]
      client: ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]
      not_client: ["10.9.0.0/16"]
      application: ["psql", "DBeaver*", ""]
      not_application: ["psql-[0-9]*"]
    action: kill
    shadow: true
    severity: low
  - name: context.only
    when:
      statements: [copy_to_file]
    action: block
  - name: total
    scope: session
    when: {pii_values: 10, bytes: 1KiB}
    action: alert
  - name: units
    when: {bytes: "2 GB"}
    action: log
  - name: plain-bytes
    when: {bytes: 1234}
    action: quarantine
  - name: hours-string
    when: {hours: "9:00-24:00"}
    action: log
`

func TestParseRules(t *testing.T) {
	p := mustParse(t, rulesPolicy)
	if p.Shadow() {
		t.Error("Shadow() = true without mode: shadow")
	}
	if got := p.Location().String(); got != "Europe/Paris" {
		t.Errorf("Location() = %s", got)
	}
	if got, want := p.GroupRoles(), []string{"analyst", "auditor", "dba"}; !reflect.DeepEqual(got, want) {
		t.Errorf("GroupRoles() = %q, want %q", got, want)
	}
	var names []string
	for _, r := range p.Rules() {
		names = append(names, r.Name)
	}
	if want := []string{"everything", "context.only", "total", "units", "plain-bytes", "hours-string"}; !reflect.DeepEqual(names, want) {
		t.Errorf("rules = %q, want %q", names, want)
	}

	r := ruleByName(t, p, "everything")
	if r.Description != "every condition at once" || r.Action != ActionKill || !r.Shadow ||
		r.Severity != "low" || r.Scope != Scope1h || r.Line != 9 || !r.Thresholded() {
		t.Errorf("everything = %+v", *r)
	}
	wantLimits := []Limit{
		{"pii_values.email", 100},
		{"pii_values.custom:free_text", 5},
		{"pii_values.national_id", 0},
		{"pii_values", 1000},
		{"pii_rows", 500},
		{"distinct_subjects", 200},
		{"rows", 100000},
		{"bytes", 50000000},
	}
	if got := r.Limits(); !reflect.DeepEqual(got, wantLimits) {
		t.Errorf("Limits() = %v, want %v", got, wantLimits)
	}
	kinds, _ := conditionOf[kindsCond](r)
	if want := (kindsCond{KindSelect, KindCopyToFile, KindCopyToProgram, KindLoExport, KindDblink}); !reflect.DeepEqual(kinds, want) {
		t.Errorf("statements = %v, want %v (server_egress expanded, duplicates dropped)", kinds, want)
	}
	hours, _ := conditionOf[hoursCond](r)
	if want := []hourRange{{22 * 60, 6 * 60}, {12 * 60, 13*60 + 30}}; !reflect.DeepEqual(hours.ranges, want) {
		t.Errorf("hours = %v, want %v", hours.ranges, want)
	}
	if days, _ := conditionOf[daysCond](r); days.list() != "mon, sat, sun" {
		t.Errorf("days = %s", days.list())
	}

	c := ruleByName(t, p, "context.only")
	if c.Thresholded() || c.Limits() != nil || c.Severity != "high" || c.Scope != ScopeStatement || c.Shadow {
		t.Errorf("context.only = %+v", *c)
	}
	for _, tc := range []struct {
		rule     string
		limits   []Limit
		severity string
	}{
		{"total", []Limit{{"pii_values", 10}, {"bytes", 1024}}, "medium"},
		{"units", []Limit{{"bytes", 2000000000}}, "medium"},
		{"plain-bytes", []Limit{{"bytes", 1234}}, "critical"},
		{"hours-string", nil, "medium"},
	} {
		r := ruleByName(t, p, tc.rule)
		if got := r.Limits(); !reflect.DeepEqual(got, tc.limits) {
			t.Errorf("%s: Limits() = %v, want %v", tc.rule, got, tc.limits)
		}
		if r.Severity != tc.severity {
			t.Errorf("%s: Severity = %q, want %q", tc.rule, r.Severity, tc.severity)
		}
	}
	if h, _ := conditionOf[hoursCond](ruleByName(t, p, "hours-string")); !reflect.DeepEqual(h.ranges, []hourRange{{9 * 60, 24 * 60}}) {
		t.Errorf("hours-string hours = %v", h)
	}
}

func TestParseRulesDefaults(t *testing.T) {
	p := mustParse(t, "version: 1\n")
	if p.Shadow() || p.Location() != time.UTC || len(p.Rules()) != 0 || len(p.GroupRoles()) != 0 {
		t.Errorf("empty policy: Shadow %v, Location %v, %d rules, GroupRoles %q", p.Shadow(), p.Location(), len(p.Rules()), p.GroupRoles())
	}
	p = mustParse(t, "version: 1\ngroups:\nrules:\n")
	if len(p.Rules()) != 0 {
		t.Error("null rules gave rules")
	}
	// mode after the rules still makes every rule shadow.
	p = mustParse(t, `version: 1
rules:
  - {name: a, when: {rows: 1}, action: block}
  - {name: b, when: {rows: 1}, action: block, shadow: false}
mode: shadow
`)
	if !p.Shadow() {
		t.Error("Shadow() = false with mode: shadow")
	}
	for _, r := range p.Rules() {
		if !r.Shadow {
			t.Errorf("rule %s not shadow under mode: shadow", r.Name)
		}
	}
	p = mustParse(t, "version: 1\nmode: enforce\nrules:\n  - {name: a, when: {rows: 1}, action: log}\n")
	if p.Shadow() || p.Rules()[0].Shadow {
		t.Error("mode: enforce gave a shadow policy")
	}
	if r := p.Rules()[0]; r.who.subjects != nil || !r.Applies(&Context{User: "anyone"}) {
		t.Error("a rule without subjects does not apply to everyone")
	}
}

func TestParseRuleErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want []string
	}{
		{"mode and timezone", "version: 1\nmode: strict\ntimezone: Mars/Base\n", []string{
			`2:7: mode: unknown mode "strict" (want enforce or shadow)`,
			`3:11: timezone: unknown time zone "Mars/Base" (want an IANA name such as UTC or Europe/Paris)`,
		}},
		{"local timezone", "version: 1\ntimezone: Local\nmode: 1\n", []string{
			`2:11: timezone: "Local" is not a time zone name (want an IANA name such as UTC or Europe/Paris)`,
			`3:7: mode: expected a string, got int "1"`,
		}},
		{"groups", `version: 1
groups:
  support: [alice, 12, ""]
  support: [carol]
  bad name: [x]
  roles: {roles: [r, [x]], member: [y]}
  scalar: alice
  7: [z]
`, []string{
			`3:20: groups.support member: expected a string, got int "12"`,
			`3:24: groups.support: empty member name`,
			`4:3: group "support" defined twice (first at line 3)`,
			`5:3: group name "bad name": want letters, digits, '_', '.' or '-'`,
			`6:22: groups.roles.roles role: expected a scalar, got a list`,
			`6:28: unknown key "member" in groups.roles (want members, roles)`,
			`7:11: groups.scalar: expected a list of members or a mapping with members and roles, got str "alice"`,
			`8:3: group name: expected a string, got int "7"`,
		}},
		{"groups not a mapping", "version: 1\ngroups: [a]\nrules: {}\n", []string{
			`2:9: groups: expected a mapping, got a list`,
			`3:8: rules: expected a list, got a mapping`,
		}},
		{"rule keys", `version: 1
rules:
  - name: a
    when: {rows: 1}
    action: log
    actoin: block
  - description: no name
  - name: "b c"
    when: {rows: 1}
    action: alert
  - name: a
    when: {rows: 1}
    action: log
  - name: d
    when: {rows: 1}
    action: alert
    shadow: maybe
    severity: urgent
    scope: 2h
`, []string{
			`6:5: unknown key "actoin" in rules entry (want action, description, except, hold_timeout, name, redact, scope, severity, shadow, subjects, when)`,
			`7:5: rules entry: missing required key "name"`,
			`7:5: rules entry: missing required key "when"`,
			`7:5: rules entry: missing required key "action"`,
			`8:11: name: "b c": want letters, digits, '_', '.' or '-'`,
			`11:11: rule "a" defined twice (first at line 3)`,
			`17:13: shadow: expected true or false, got str "maybe"`,
			`18:15: severity: unknown severity "urgent" (want low, medium, high or critical)`,
			`19:12: scope: unknown scope "2h" (want statement, session, 1m, 10m, 1h or 24h)`,
		}},
		{"actions", `version: 1
rules:
  - {name: a, when: {rows: 1}, action: redact, redact: blur}
  - {name: b, when: {rows: 1}, action: hold, hold_timeout: soon}
  - {name: c, when: {rows: 1}, action: deny}
  - {name: d, when: {rows: 1}, action: [block]}
  - {name: e, when: {rows: 1}, action: block, redact: mask, hold_timeout: 1m}
`, []string{
			`3:56: redact: want mask or null, got "blur"`,
			`4:60: hold_timeout: want a positive duration such as 5m, got "soon"`,
			`5:40: action: unknown action "deny" (want log, alert, redact, hold, block, kill or quarantine)`,
			`6:40: action: expected a scalar, got a list`,
			`7:55: redact: only for action redact`,
			`7:75: hold_timeout: only for action hold`,
		}},
		{"conditions required", `version: 1
rules:
  - {name: a, when: {}, action: log}
  - {name: b, when: ~, action: log}
  - {name: c, when: {rows: 1, color: red}, action: log}
`, []string{
			`3:21: when: no condition (a rule needs at least one)`,
			`4:21: when: expected a mapping, got null "~"`,
			`5:31: unknown key "color" in when (want application, bytes, client, days, distinct_subjects, estimated_rows, hours, not_application, not_client, pii_rows, pii_values, rows, sequential_rows, service_account, sessions, statements, tables, unexplained_rows)`,
		}},
		{"scope without thresholds", `version: 1
rules:
  - name: a
    scope: 1h
    when: {tables: [public.t]}
    action: alert
  - name: b
    scope: statement
    when: {tables: [public.t]}
    action: alert
  - name: c
    scope: session
    when: {tables: [public.t], rows: -1}
    action: alert
`, []string{
			`4:12: scope: scope applies only to thresholds (pii_values, pii_rows, distinct_subjects, rows, bytes, unexplained_rows, sequential_rows), and this rule has none`,
			`13:38: rows: negative limit -1`,
		}},
		{"limits", `version: 1
rules:
  - name: a
    when:
      pii_values: -5
      pii_rows: 1.5
      distinct_subjects: lots
      rows: [1]
    action: log
  - name: b
    when:
      pii_values: {email: 10, e-mail: 1, "custom:": 1, any: x, email: 3, 5: 1}
    action: log
  - name: c
    when:
      pii_values: {}
      rows: 99999999999999999999
    action: log
`, []string{
			`5:19: pii_values: negative limit -5`,
			`6:17: pii_rows: expected a non-negative integer, got float "1.5"`,
			`7:26: distinct_subjects: expected a non-negative integer, got str "lots"`,
			`8:13: rows: expected a scalar, got a list`,
			`12:31: pii_values: unknown category "e-mail" (want one of email, name, phone, national_id, card, address, date_of_birth, ip, iban, or custom:<name>)`,
			`12:42: pii_values: bad custom category "custom:": want custom:<name> with letters, digits, '_' or '-'`,
			`12:61: pii_values.any: expected a non-negative integer, got str "x"`,
			`12:64: pii_values: "email" repeated (first at line 12)`,
			`12:74: pii_values key: expected a string, got int "5"`,
			`16:19: pii_values: empty mapping (want a limit, or limits per category)`,
			`17:13: rows: expected a non-negative integer, got float "99999999999999999999"`,
		}},
		{"bytes", `version: 1
rules:
  - {name: a, when: {bytes: 50mb}, action: log}
  - {name: b, when: {bytes: 1.5GB}, action: log}
  - {name: c, when: {bytes: "-1"}, action: log}
  - {name: d, when: {bytes: 99999999999GiB}, action: log}
  - {name: e, when: {bytes: 5 PB}, action: log}
  - {name: f, when: {bytes: -3}, action: log}
`, []string{
			`3:29: bytes: unknown unit "mb" in "50mb" (want B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)`,
			`4:29: bytes: bad size "1.5GB": want a whole number of bytes, optionally with a unit (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)`,
			`5:29: bytes: bad size "-1": want a whole number of bytes, optionally with a unit (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)`,
			`6:29: bytes: "99999999999GiB" is too large`,
			`7:29: bytes: unknown unit "PB" in "5 PB" (want B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)`,
			`8:29: bytes: negative limit -3`,
		}},
		{"tables and statements", `version: 1
rules:
  - name: a
    when:
      tables: [customers, "public.[x", a.b.c, 7, "*.t"]
      statements: [select, copy, server_egress, select]
    action: log
  - {name: b, when: {tables: []}, action: log}
  - {name: c, when: {statements: select}, action: log}
`, []string{
			`5:16: tables: "customers" has 1 name parts, want schema.table`,
			`5:27: tables: malformed glob "[x": unterminated character class`,
			`5:40: tables: "a.b.c" has 3 name parts, want schema.table`,
			`5:47: tables: expected a string, got int "7"`,
			`6:28: statements: unknown statement kind "copy" (want one of select, copy_to_stdout, copy_to_file, copy_to_program, copy_from, create_table_as, insert_select, lo_export, dblink, function_call, ddl, dml, other, or server_egress)`,
			`6:49: statements: "select" listed twice (first at line 6)`,
			`8:30: tables: empty list (omit the condition instead)`,
			`9:34: statements: expected a list, got str "select"`,
		}},
		{"hours and days", `version: 1
rules:
  - name: a
    when:
      hours: ["25:00-06:00", "22:00", "10:00-10:00", "24:00-01:00", "9:5-10:00", "08:00-24:00", "00:00-24:00", "x-y"]
      days: [sat, saturday, Sun, sat]
    action: log
  - {name: b, when: {hours: 22}, action: log}
  - {name: c, when: {days: sat}, action: log}
`, []string{
			`5:15: hours: bad time "25:00" in "25:00-06:00": want HH:MM from 00:00 to 24:00`,
			`5:30: hours: bad range "22:00": want HH:MM-HH:MM`,
			`5:39: hours: empty range "10:00-10:00": start and end are the same time`,
			`5:54: hours: bad time "24:00" in "24:00-01:00": want HH:MM from 00:00 to 24:00`,
			`5:69: hours: bad time "9:5" in "9:5-10:00": want HH:MM from 00:00 to 24:00`,
			`5:97: hours: empty range "00:00-24:00": start and end are the same time`,
			`5:112: hours: bad time "x" in "x-y": want HH:MM from 00:00 to 24:00`,
			`6:19: days: unknown day "saturday" (want mon, tue, wed, thu, fri, sat or sun)`,
			`6:29: days: unknown day "Sun" (want mon, tue, wed, thu, fri, sat or sun)`,
			`6:34: days: "sat" listed twice (first at line 6)`,
			`8:29: hours: expected a string, got int "22"`,
			`9:28: days: expected a list, got str "sat"`,
		}},
		{"client and application", `version: 1
rules:
  - name: a
    when:
      client: ["10.0.0.0/33", "10.0.0.300", "fe80::1%eth0", "::ffff:10.0.0.1"]
      not_client: [localhost]
      application: ["psql[", "a\\"]
      not_application: ["x]"]
    action: log
`, []string{
			`5:16: client: bad CIDR "10.0.0.0/33": prefix length out of range`,
			`5:31: client: bad address "10.0.0.300": IPv4 field has value >255`,
			`6:20: not_client: bad address "localhost": unable to parse IP`,
			`7:21: application: malformed glob "psql[": unterminated character class`,
			`7:30: application: malformed glob "a\\": trailing backslash`,
			`8:25: not_application: malformed glob "x]": unmatched ']'`,
		}},
		{"subjects", `version: 1
groups:
  support: [alice]
rules:
  - name: a
    subjects: [group:nobody, "group:", "role:", "", "ali*", 3, group:support]
    except: [group:ghost]
    when: {rows: 1}
    action: log
  - {name: b, subjects: [], when: {rows: 1}, action: log}
  - {name: c, subjects: alice, except: bob, when: {rows: 1}, action: log}
`, []string{
			`6:16: unknown group "nobody" (groups defines support)`,
			`6:30: subjects: "group:" names no group`,
			`6:40: subjects: "role:" names no role`,
			`6:49: subjects: empty name`,
			`6:53: subjects: "ali*": names are matched exactly; "*" alone means everyone`,
			`6:61: subjects: expected a string, got int "3"`,
			`7:14: unknown group "ghost" (groups defines support)`,
			`10:25: subjects: empty list (omit subjects, or write ["*"], for everyone)`,
			`11:25: subjects: expected a list, got str "alice"`,
			`11:40: except: expected a list, got str "bob"`,
		}},
		{"unknown group without groups", "version: 1\nrules:\n  - {name: a, subjects: [group:x], when: {rows: 1}, action: log}\n", []string{
			`3:26: unknown group "x" (groups defines none)`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := parseErrors(t, tc.src)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

const appliesPolicy = `version: 1
timezone: Europe/Paris
groups:
  support: [alice, bob]
  analysts: {roles: [analyst]}
  oncall: {members: [carol], roles: [dba]}
rules:
  - {name: everyone, when: {rows: 1}, action: log}
  - {name: star, subjects: ["*"], when: {rows: 1}, action: log}
  - {name: by-name, subjects: [alice], when: {rows: 1}, action: log}
  - {name: support, subjects: [group:support], when: {rows: 1}, action: log}
  - {name: analysts, subjects: [group:analysts], when: {rows: 1}, action: log}
  - {name: oncall, subjects: [group:oncall], when: {rows: 1}, action: log}
  - {name: role, subjects: [role:analyst], when: {rows: 1}, action: log}
  - {name: except, subjects: [group:support, group:analysts], except: [group:oncall, bob], when: {rows: 1}, action: log}
  - {name: except-all, except: ["*"], when: {rows: 1}, action: log}
  - {name: tables, when: {tables: [public.customers, "crm.*", '"Sales.EU".l?ads']}, action: log}
  - {name: kinds, when: {statements: [server_egress, select]}, action: log}
  - {name: night, when: {hours: "22:00-06:00"}, action: log}
  - {name: lunch, when: {hours: ["12:00-13:00", "18:00-24:00"]}, action: log}
  - {name: weekend, when: {days: [sat, sun]}, action: log}
  - {name: client, when: {client: ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]}, action: log}
  - {name: not-client, when: {not_client: ["10.0.0.0/8"]}, action: log}
  - {name: app, when: {application: ["psql", "DBeaver*"]}, action: log}
  - {name: no-app, when: {application: [""]}, action: log}
  - {name: not-app, when: {not_application: ["psql", "DBeaver*"]}, action: log}
  - name: all
    subjects: [group:support]
    when:
      tables: [public.customers]
      statements: [select]
      days: [mon]
      client: ["10.0.0.0/8"]
      application: [psql]
    action: log
`

func TestApplies(t *testing.T) {
	p := mustParse(t, appliesPolicy)
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	// Monday 2024-01-15, in Paris (UTC+1 in winter).
	at := func(hh, mm int) time.Time { return time.Date(2024, 1, 15, hh, mm, 0, 0, paris) }
	base := Context{
		User:        "alice",
		ClientAddr:  netip.MustParseAddr("10.1.2.3"),
		Application: "psql",
		Time:        at(10, 0),
		Tables:      []string{"public.customers"},
		Kinds:       []StatementKind{KindSelect},
	}
	for _, tc := range []struct {
		name string
		rule string
		edit func(c *Context)
		want bool
	}{
		{"no subjects is everyone", "everyone", func(c *Context) { c.User = "zed" }, true},
		{"star", "star", func(c *Context) { c.User = "zed" }, true},
		{"by name", "by-name", nil, true},
		{"by name is exact", "by-name", func(c *Context) { c.User = "Alice" }, false},
		{"group member", "support", func(c *Context) { c.User = "bob" }, true},
		{"not a group member", "support", func(c *Context) { c.User = "carol" }, false},
		{"group by role", "analysts", func(c *Context) { c.User = "zed"; c.Roles = []string{"reader", "analyst"} }, true},
		{"group by own role name", "analysts", func(c *Context) { c.User = "analyst" }, true},
		{"group role missing", "analysts", func(c *Context) { c.Roles = []string{"reader"} }, false},
		{"group by members", "oncall", func(c *Context) { c.User = "carol" }, true},
		{"group by roles beside members", "oncall", func(c *Context) { c.Roles = []string{"dba"} }, true},
		{"role subject", "role", func(c *Context) { c.Roles = []string{"analyst"} }, true},
		{"role subject is the user", "role", func(c *Context) { c.User = "analyst" }, true},
		{"role subject missing", "role", nil, false},
		{"except does not match", "except", nil, true},
		{"except by name", "except", func(c *Context) { c.User = "bob" }, false},
		{"except by group role", "except", func(c *Context) { c.Roles = []string{"dba"} }, false},
		{"except by group member", "except", func(c *Context) { c.User = "carol"; c.Roles = []string{"analyst"} }, false},
		{"except star", "except-all", nil, false},
		{"table exact", "tables", nil, true},
		{"table glob", "tables", func(c *Context) { c.Tables = []string{"public.orders", "crm.leads"} }, true},
		{"table glob with a dotted schema", "tables", func(c *Context) { c.Tables = []string{"Sales.EU.leads"} }, true},
		{"table dotted schema is exact", "tables", func(c *Context) { c.Tables = []string{"sales.eu.leads"} }, false},
		{"table no match", "tables", func(c *Context) { c.Tables = []string{"public.customers_old", "crmx.t"} }, false},
		{"table none", "tables", func(c *Context) { c.Tables = nil }, false},
		{"tables unknown", "tables", func(c *Context) { c.Tables, c.TablesUnknown = []string{"public.orders"}, true }, true},
		{"kind", "kinds", nil, true},
		{"kind expanded", "kinds", func(c *Context) { c.Kinds = []StatementKind{KindDDL, KindDblink} }, true},
		{"kind no match", "kinds", func(c *Context) { c.Kinds = []StatementKind{KindCopyToStdout} }, false},
		{"kind none", "kinds", func(c *Context) { c.Kinds = nil }, false},
		{"night late", "night", func(c *Context) { c.Time = at(23, 30) }, true},
		{"night start included", "night", func(c *Context) { c.Time = at(22, 0) }, true},
		{"night early", "night", func(c *Context) { c.Time = at(5, 59) }, true},
		{"night end excluded", "night", func(c *Context) { c.Time = at(6, 0) }, false},
		{"night day", "night", nil, false},
		// 21:30 UTC is 22:30 in Paris; 05:30 UTC is 06:30.
		{"night in the policy's zone", "night", func(c *Context) { c.Time = time.Date(2024, 1, 15, 21, 30, 0, 0, time.UTC) }, true},
		{"night ends in the policy's zone", "night", func(c *Context) { c.Time = time.Date(2024, 1, 15, 5, 30, 0, 0, time.UTC) }, false},
		{"lunch list", "lunch", func(c *Context) { c.Time = at(12, 59) }, true},
		{"until midnight", "lunch", func(c *Context) { c.Time = at(23, 59) }, true},
		{"outside the list", "lunch", func(c *Context) { c.Time = at(13, 0) }, false},
		{"weekday", "weekend", nil, false},
		{"sunday", "weekend", func(c *Context) { c.Time = time.Date(2024, 1, 14, 12, 0, 0, 0, paris) }, true},
		// Sunday 23:30 UTC is Monday 00:30 in Paris.
		{"day in the policy's zone", "weekend", func(c *Context) { c.Time = time.Date(2024, 1, 14, 23, 30, 0, 0, time.UTC) }, false},
		{"client CIDR", "client", nil, true},
		{"client address", "client", func(c *Context) { c.ClientAddr = netip.MustParseAddr("192.168.1.7") }, true},
		{"client other address", "client", func(c *Context) { c.ClientAddr = netip.MustParseAddr("192.168.1.8") }, false},
		{"client IPv4-mapped", "client", func(c *Context) { c.ClientAddr = netip.MustParseAddr("::ffff:10.0.0.1") }, true},
		{"client IPv6", "client", func(c *Context) { c.ClientAddr = netip.MustParseAddr("2001:db8::1") }, true},
		{"client unknown", "client", func(c *Context) { c.ClientAddr = netip.Addr{} }, false},
		{"not_client inside", "not-client", nil, false},
		{"not_client outside", "not-client", func(c *Context) { c.ClientAddr = netip.MustParseAddr("172.16.0.1") }, true},
		{"not_client unknown", "not-client", func(c *Context) { c.ClientAddr = netip.Addr{} }, true},
		{"application exact", "app", nil, true},
		{"application glob", "app", func(c *Context) { c.Application = "DBeaver 23.1" }, true},
		{"application is case-sensitive", "app", func(c *Context) { c.Application = "dbeaver" }, false},
		{"application no match", "app", func(c *Context) { c.Application = "psql2" }, false},
		{"empty application", "no-app", func(c *Context) { c.Application = "" }, true},
		{"empty application only", "no-app", nil, false},
		{"not_application matches", "not-app", nil, false},
		{"not_application glob", "not-app", func(c *Context) { c.Application = "DBeaver" }, false},
		{"not_application other", "not-app", func(c *Context) { c.Application = "python" }, true},
		{"all conditions", "all", nil, true},
		{"all but the day", "all", func(c *Context) { c.Time = c.Time.Add(24 * time.Hour) }, false},
		{"all but the application", "all", func(c *Context) { c.Application = "x" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			if tc.edit != nil {
				tc.edit(&c)
			}
			if got := ruleByName(t, p, tc.rule).Applies(&c); got != tc.want {
				t.Errorf("%s.Applies(%+v) = %v, want %v", tc.rule, c, got, tc.want)
			}
		})
	}
}

const exceededPolicy = `version: 1
rules:
  - {name: total, when: {pii_values: 10}, action: alert}
  - {name: email, when: {pii_values: {email: 10}}, action: alert}
  - {name: any, when: {pii_values: {any: 10}}, action: alert}
  - name: and
    when:
      pii_values: {national_id: 0, email: 5, any: 20}
      pii_rows: 3
      distinct_subjects: 2
      rows: 4
      bytes: 1kB
    action: block
  - {name: rows, when: {rows: 0, tables: [a.b]}, action: log}
  - {name: context, when: {tables: [a.b]}, action: log}
`

func TestExceeded(t *testing.T) {
	p := mustParse(t, exceededPolicy)
	all := Figures{
		Rows: 5, Bytes: 1001, PIIRows: 4, DistinctSubjects: 3,
		PIIValues: map[pii.Category]int64{pii.Email: 6, pii.NationalID: 1, pii.Phone: 14},
	}
	for _, tc := range []struct {
		name   string
		rule   string
		f      Figures
		want   Breach
		wantOK bool
	}{
		{"total over", "total", Figures{PIIValues: map[pii.Category]int64{pii.Email: 6, pii.Phone: 5}}, Breach{"pii_values", 11, 10}, true},
		{"total equal is not exceeded", "total", Figures{PIIValues: map[pii.Category]int64{pii.Email: 6, pii.Phone: 4}}, Breach{}, false},
		{"total of nothing", "total", Figures{}, Breach{}, false},
		{"category over", "email", Figures{PIIValues: map[pii.Category]int64{pii.Email: 11}}, Breach{"pii_values.email", 11, 10}, true},
		{"category counts only itself", "email", Figures{PIIValues: map[pii.Category]int64{pii.Email: 10, pii.Phone: 100}}, Breach{}, false},
		{"any is the total", "any", Figures{PIIValues: map[pii.Category]int64{pii.Email: 10, "custom:x": 1}}, Breach{"pii_values", 11, 10}, true},
		{"every threshold exceeded", "and", all, Breach{"pii_values.national_id", 1, 0}, true},
		{"one threshold equal", "and", func() Figures { f := all; f.Bytes = 1000; return f }(), Breach{}, false},
		{"category below", "and", func() Figures {
			f := all
			f.PIIValues = map[pii.Category]int64{pii.Email: 5, pii.NationalID: 1, pii.Phone: 100}
			return f
		}(), Breach{}, false},
		{"total below", "and", func() Figures {
			f := all
			f.PIIValues = map[pii.Category]int64{pii.Email: 6, pii.NationalID: 1, pii.Phone: 13}
			return f
		}(), Breach{}, false},
		{"rows over zero", "rows", Figures{Rows: 1}, Breach{"rows", 1, 0}, true},
		{"zero rows", "rows", Figures{}, Breach{}, false},
		{"context rule has nothing to exceed", "context", Figures{}, Breach{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ruleByName(t, p, tc.rule).Exceeded(&tc.f)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("Exceeded = %+v, %v; want %+v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestExceededAllocs(t *testing.T) {
	p := mustParse(t, exceededPolicy)
	r := ruleByName(t, p, "and")
	f := &Figures{
		Rows: 5, Bytes: 1001, PIIRows: 4, DistinctSubjects: 3,
		PIIValues: map[pii.Category]int64{pii.Email: 6, pii.NationalID: 1, pii.Phone: 14, "custom:x": 3},
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, ok := r.Exceeded(f); !ok {
			t.Fatal("not exceeded")
		}
	}); n != 0 {
		t.Errorf("Exceeded allocates %v times, want 0", n)
	}
	f.Bytes = 0
	if n := testing.AllocsPerRun(100, func() { r.Exceeded(f) }); n != 0 {
		t.Errorf("Exceeded (not exceeded) allocates %v times, want 0", n)
	}
}

func TestExplain(t *testing.T) {
	p := mustParse(t, appliesPolicy)
	c := &Context{
		User:        "alice",
		ClientAddr:  netip.MustParseAddr("172.16.0.9"),
		Application: "python",
		Time:        time.Date(2024, 1, 15, 9, 5, 0, 0, time.UTC), // Monday 10:05 in Paris
		Tables:      []string{"public.orders"},
		Kinds:       []StatementKind{KindCopyToStdout},
	}
	want := map[string]string{
		"everyone":   "",
		"star":       "",
		"by-name":    "",
		"support":    "",
		"analysts":   "subjects: alice is not in group:analysts",
		"oncall":     "subjects: alice is not in group:oncall",
		"role":       "subjects: alice is not in role:analyst",
		"except":     "",
		"except-all": `except: everyone is excepted ("*")`,
		"tables":     `tables: public.orders matches none of public.customers, crm.*, "Sales.EU".l?ads`,
		"kinds":      "statements: copy_to_stdout is none of copy_to_file, copy_to_program, lo_export, dblink, select",
		"night":      "hours: 10:05 Europe/Paris is outside 22:00-06:00",
		"lunch":      "hours: 10:05 Europe/Paris is outside 12:00-13:00, 18:00-24:00",
		"weekend":    "days: mon (Europe/Paris) is not one of sat, sun",
		"client":     "client: 172.16.0.9 is in none of 10.0.0.0/8, 192.168.1.7, 2001:db8::/32",
		"not-client": "",
		"app":        `application: "python" matches none of psql, DBeaver*`,
		"no-app":     `application: "python" matches none of `,
		"not-app":    "",
		"all":        "tables: public.orders matches none of public.customers",
	}
	got := p.Explain(c)
	if len(got) != len(p.Rules()) {
		t.Fatalf("Explain returned %d explanations for %d rules", len(got), len(p.Rules()))
	}
	for i, e := range got {
		if e.Rule != p.rules[i] {
			t.Errorf("explanation %d is for rule %s, want %s", i, e.Rule.Name, p.rules[i].Name)
		}
		w, ok := want[e.Rule.Name]
		if !ok {
			t.Errorf("no expectation for rule %s", e.Rule.Name)
			continue
		}
		if e.Why != w || e.Applies != (w == "") {
			t.Errorf("%s: Applies %v, Why %q; want Why %q", e.Rule.Name, e.Applies, e.Why, w)
		}
		if e.Applies != e.Rule.Applies(c) {
			t.Errorf("%s: Explain says %v, Applies %v", e.Rule.Name, e.Applies, !e.Applies)
		}
	}

	for _, tc := range []struct {
		rule string
		c    Context
		want string
	}{
		{"by-name", Context{User: "bob"}, "subjects: bob is not alice"},
		{"except", Context{User: "zed", Roles: []string{"dba"}}, "subjects: zed is not in any of group:support, group:analysts"},
		{"except", Context{User: "bob"}, "except: bob is excepted by name"},
		{"except", Context{User: "alice", Roles: []string{"dba"}}, "except: alice is in group:oncall"},
		{"tables", Context{}, "tables: the statement names no table (want any of public.customers, crm.*, \"Sales.EU\".l?ads)"},
		{"kinds", Context{}, "statements: an unclassified statement is none of copy_to_file, copy_to_program, lo_export, dblink, select"},
		{"client", Context{}, "client: the client address is unknown (want one of 10.0.0.0/8, 192.168.1.7, 2001:db8::/32)"},
		{"not-client", Context{ClientAddr: netip.MustParseAddr("::ffff:10.0.0.1")}, "not_client: 10.0.0.1 is in 10.0.0.0/8"},
		{"not-app", Context{Application: "DBeaver"}, `not_application: "DBeaver" matches DBeaver*`},
	} {
		r := ruleByName(t, p, tc.rule)
		ok, why := r.check(&tc.c, true)
		if ok || why != tc.want {
			t.Errorf("%s: check(%+v) = %v, %q; want %q", tc.rule, tc.c, ok, why, tc.want)
		}
	}
}

func TestDefaultRules(t *testing.T) {
	if _, err := Parse("<default>", []byte(DefaultYAML)); err != nil {
		t.Fatalf("DefaultYAML does not parse:\n%v", err)
	}
	p := Default()
	if p.Shadow() || p.Location() != time.UTC || len(p.GroupRoles()) != 0 {
		t.Errorf("Default: Shadow %v, Location %v, GroupRoles %q", p.Shadow(), p.Location(), p.GroupRoles())
	}
	type summary struct {
		Name   string
		Scope  Scope
		Action Action
		Limits []Limit
	}
	var got []summary
	for _, r := range p.Rules() {
		got = append(got, summary{r.Name, r.Scope, r.Action, r.Limits()})
		if r.Shadow || r.Description == "" || r.who.subjects != nil {
			t.Errorf("%s: Shadow %v, Description %q, subjects %v", r.Name, r.Shadow, r.Description, r.who.subjects)
		}
	}
	want := []summary{
		{"server-egress", ScopeStatement, ActionBlock, nil},
		{"statement-pii-alert", ScopeStatement, ActionAlert, []Limit{{"pii_values", 1000}}},
		{"statement-pii-block", ScopeStatement, ActionBlock, []Limit{{"pii_values", 10000}}},
		{"session-pii-alert", ScopeSession, ActionAlert, []Limit{{"pii_values", 20000}}},
		{"daily-pii-alert", Scope24h, ActionAlert, []Limit{{"pii_values", 50000}}},
		{"daily-pii-block", Scope24h, ActionBlock, []Limit{{"pii_values", 200000}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Default rules:\n%+v\nwant:\n%+v", got, want)
	}
	egress := ruleByName(t, p, "server-egress")
	for _, k := range statementKinds {
		c := &Context{User: "anyone", Kinds: []StatementKind{KindSelect, k}}
		want := k == KindCopyToFile || k == KindCopyToProgram || k == KindLoExport || k == KindDblink
		if egress.Applies(c) != want {
			t.Errorf("server-egress applies to %s: %v, want %v", k, !want, want)
		}
	}
	if _, ok := ruleByName(t, p, "statement-pii-alert").Exceeded(&Figures{PIIValues: map[pii.Category]int64{pii.Email: 1001}}); !ok {
		t.Error("statement-pii-alert does not fire at 1001 values")
	}
	if Default() == p || Default().Rules()[0] == p.Rules()[0] {
		t.Error("Default shares state between calls")
	}
}

func TestExampleRules(t *testing.T) {
	p, err := Load(filepath.Join("testdata", "example.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if p.Location().String() != "Europe/Paris" || p.Shadow() {
		t.Errorf("Location %v, Shadow %v", p.Location(), p.Shadow())
	}
	if got, want := p.GroupRoles(), []string{"analyst", "dba"}; !reflect.DeepEqual(got, want) {
		t.Errorf("GroupRoles() = %q, want %q", got, want)
	}
	var names []string
	for _, r := range p.Rules() {
		names = append(names, r.Name)
	}
	if want := []string{"server-egress", "email-bulk-statement", "night-export", "weekend-outside-office", "hourly-volume", "daily-pii"}; !reflect.DeepEqual(names, want) {
		t.Errorf("rules = %q, want %q", names, want)
	}
	if r := ruleByName(t, p, "hourly-volume"); !r.Shadow || r.Scope.Window() != time.Hour {
		t.Errorf("hourly-volume: Shadow %v, window %v", r.Shadow, r.Scope.Window())
	}
}

func TestActionScope(t *testing.T) {
	for i, a := range []Action{ActionLog, ActionAlert, ActionRedact, ActionHold, ActionBlock, ActionKill, ActionQuarantine} {
		if a.Severity() != i {
			t.Errorf("%s.Severity() = %d, want %d", a, a.Severity(), i)
		}
	}
	if Action("deny").Severity() != -1 {
		t.Error("unknown action has a severity")
	}
	for s, want := range map[Scope]time.Duration{
		ScopeStatement: 0, ScopeSession: 0, Scope1m: time.Minute, Scope10m: 10 * time.Minute,
		Scope1h: time.Hour, Scope24h: 24 * time.Hour,
	} {
		if got := s.Window(); got != want {
			t.Errorf("%s.Window() = %v, want %v", s, got, want)
		}
	}
}

func BenchmarkExceeded(b *testing.B) {
	p := mustParse(b, exceededPolicy)
	r := ruleByName(b, p, "and")
	f := &Figures{Rows: 5, Bytes: 1001, PIIRows: 4, DistinctSubjects: 3,
		PIIValues: map[pii.Category]int64{pii.Email: 6, pii.NationalID: 1, pii.Phone: 14}}
	b.ReportAllocs()
	for b.Loop() {
		r.Exceeded(f)
	}
}

func TestRedactAndHoldDefaults(t *testing.T) {
	p, err := Parse("t.yaml", []byte(`version: 1
rules:
  - {name: r, when: {pii_rows: 1}, action: redact}
  - {name: n, when: {pii_rows: 1}, action: redact, redact: "null"}
  - {name: h, when: {pii_rows: 1}, action: hold}
  - {name: h2, when: {pii_rows: 1}, action: hold, hold_timeout: 30s}
`))
	if err != nil {
		t.Fatal(err)
	}
	r := p.Rules()
	if r[0].RedactWith != "mask" || r[1].RedactWith != "null" || r[2].HoldTimeout != 5*time.Minute || r[3].HoldTimeout != 30*time.Second {
		t.Errorf("defaults: %q %q %v %v", r[0].RedactWith, r[1].RedactWith, r[2].HoldTimeout, r[3].HoldTimeout)
	}
	if r[0].Severity != "medium" || r[2].Severity != "high" {
		t.Errorf("severities %q %q", r[0].Severity, r[2].Severity)
	}
}

func TestCanaries(t *testing.T) {
	p, err := Parse("c.yaml", []byte(`version: 1
canaries:
  values: [canary.7f3a@example.com, "+1 415 555 0199"]
  block_at: 3
`))
	if err != nil {
		t.Fatal(err)
	}
	if c := p.Canaries(); len(c.Values) != 2 || c.BlockAt != 3 || c.Values[1] != "+1 415 555 0199" {
		t.Errorf("Canaries = %+v", c)
	}
	if c := Default().Canaries(); len(c.Values) != 0 {
		t.Errorf("default canaries %+v", c)
	}
	_, err = Parse("c.yaml", []byte(`version: 1
canaries:
  values: [abc, canary.7f3a@example.com, canary.7f3a@example.com]
  block_at: 0
`))
	want := []string{
		`c.yaml:3:12: canaries.values: "abc" is shorter than 6 characters and would match ordinary data`,
		`c.yaml:3:42: canaries.values: "canary.7f3a@example.com" listed twice (first at line 3)`,
		`c.yaml:4:13: canaries.block_at: want at least 1`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("errors:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
}

// TestCanarySubjects: canaries take subjects and except as rules do, with
// the same names, groups and roles, and the same errors.
func TestCanarySubjects(t *testing.T) {
	p, err := Parse("c.yaml", []byte(`version: 1
groups:
  jobs: {members: [etl_svc], roles: [pgw_jobs]}
canaries:
  values: [canary.7f3a@example.com]
  except: [backup_svc, group:jobs]
`))
	if err != nil {
		t.Fatal(err)
	}
	c := p.Canaries()
	for _, tc := range []struct {
		ctx  Context
		want bool
		why  string
	}{
		{Context{User: "alice"}, true, ""},
		{Context{User: "backup_svc"}, false, "except: backup_svc is excepted by name"},
		{Context{User: "etl_svc"}, false, "except: etl_svc is in group:jobs"},
		{Context{User: "carol", Roles: []string{"pgw_jobs"}}, false, "except: carol is in group:jobs"},
	} {
		ok, why := c.Explain(&tc.ctx)
		if ok != tc.want || why != tc.why || c.Applies(&tc.ctx) != tc.want {
			t.Errorf("%s: Explain %v %q, want %v %q", tc.ctx.User, ok, why, tc.want, tc.why)
		}
	}
	if !slices.Contains(p.GroupRoles(), "pgw_jobs") {
		t.Errorf("GroupRoles %v lacks the canaries' group's role", p.GroupRoles())
	}

	p, err = Parse("c.yaml", []byte(`version: 1
canaries:
  values: [canary.7f3a@example.com]
  subjects: [role:pgw_agents, dave]
`))
	if err != nil {
		t.Fatal(err)
	}
	c = p.Canaries()
	if c.Applies(&Context{User: "backup_svc"}) || !c.Applies(&Context{User: "dave"}) || !c.Applies(&Context{User: "erin", Roles: []string{"pgw_agents"}}) {
		t.Errorf("subjects [role:pgw_agents, dave] do not select dave and pgw_agents' members alone")
	}
	if _, why := c.Explain(&Context{User: "backup_svc"}); why != "subjects: backup_svc is not in any of role:pgw_agents, dave" {
		t.Errorf("Explain: %q", why)
	}
	if !Default().Canaries().Applies(&Context{User: "anyone"}) {
		t.Errorf("canaries without subjects do not watch everyone")
	}

	_, err = Parse("c.yaml", []byte(`version: 1
canaries:
  values: [canary.7f3a@example.com]
  subjects: []
  except: [group:nope, "svc*"]
`))
	want := []string{
		`c.yaml:4:13: canaries.subjects: empty list (omit subjects, or write ["*"], for everyone)`,
		`c.yaml:5:12: unknown group "nope" (groups defines none)`,
		`c.yaml:5:24: canaries.except: "svc*": names are matched exactly; "*" alone means everyone`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("errors:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
}

func TestNormsSection(t *testing.T) {
	if d := Default().Norms(); !d.Enabled || d.BlockScore != 0 || d.LearningDays != 7 {
		t.Errorf("built-in norms %+v: want on, alerting only, 7 learning days", d)
	}
	p, err := Parse("n.yaml", []byte("version: 1\nnorms:\n  learning_days: 3\n  block_score: 6\n  statement_factor: 20\n"))
	if err != nil {
		t.Fatal(err)
	}
	n := p.Norms()
	if !n.Enabled || n.LearningDays != 3 || n.BlockScore != 6 || n.StatementFactor != 20 || n.MinActiveDays != 5 || n.AlertScore != 1 {
		t.Errorf("norms %+v", n)
	}
	if p, _ := Parse("n.yaml", []byte("version: 1\n")); p.Norms().Enabled {
		t.Error("norms on without a section")
	}
	_, err = Parse("n.yaml", []byte("version: 1\nnorms:\n  learning_days: 0\n  alert_score: 2\n  block_score: 1\n  max_daily_rise: lots\n"))
	want := []string{
		"n.yaml:3:3: norms: block_score 1 is below alert_score 2",
		"n.yaml:3:18: norms.learning_days: want at least 1",
		`n.yaml:6:19: norms.max_daily_rise: want a number of at least 0, got str "lots"`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("errors:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
	if n.OrgChangeEmployees != 3 || n.OrgChangeSpan != time.Hour || n.OrgChangeHold != 15*time.Minute {
		t.Errorf("org change defaults %+v", n)
	}
	p, err = Parse("n.yaml", []byte("version: 1\nnorms:\n  org_change_employees: 5\n  org_change_span: 2h\n  org_change_hold: 30m\n"))
	if err != nil {
		t.Fatal(err)
	}
	if n := p.Norms(); n.OrgChangeEmployees != 5 || n.OrgChangeSpan != 2*time.Hour || n.OrgChangeHold != 30*time.Minute {
		t.Errorf("org change %+v", n)
	}
	_, err = Parse("n.yaml", []byte("version: 1\nnorms:\n  org_change_employees: 1\n  org_change_span: 10m\n  org_change_hold: 1h\n"))
	want = []string{
		"n.yaml:3:3: norms: org_change_hold 1h0m0s is longer than org_change_span 10m0s",
		"n.yaml:3:25: norms.org_change_employees: want 0 (off) or at least 2",
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("errors:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
}

func TestGroupsOf(t *testing.T) {
	p, err := Parse("g.yaml", []byte(`version: 1
groups:
  support: [alice, bob]
  analysts: {roles: [analyst]}
  everyone_else: [carol]
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		c    Context
		want string
	}{
		{Context{User: "alice"}, "support"},
		{Context{User: "dave", Roles: []string{"analyst"}}, "analysts"},
		{Context{User: "bob", Roles: []string{"analyst"}}, "analysts,support"},
		{Context{User: "zed"}, ""},
	} {
		if got := strings.Join(p.GroupsOf(&tc.c), ","); got != tc.want {
			t.Errorf("GroupsOf(%+v) = %q, want %q", tc.c, got, tc.want)
		}
	}
}

func TestEstimatedRows(t *testing.T) {
	p, err := Parse("e.yaml", []byte(`version: 1
rules:
  - name: big-reads
    when: {tables: [public.customers], estimated_rows: 100}
    action: block
`))
	if err != nil {
		t.Fatal(err)
	}
	r := p.Rules()[0]
	if !r.NeedsEstimate() || r.Thresholded() {
		t.Fatalf("NeedsEstimate %v Thresholded %v", r.NeedsEstimate(), r.Thresholded())
	}
	c := &Context{User: "a", Tables: []string{"public.customers"}}
	for est, want := range map[int64]bool{0: false, 100: false, 101: true, 50000: true} {
		c.EstimatedRows = est
		if got := r.Applies(c); got != want {
			t.Errorf("estimate %d: Applies %v", est, got)
		}
	}
	c.EstimatedRows = 5
	if e := p.Explain(c); e[0].Applies || !strings.Contains(e[0].Why, "expects 5 rows") {
		t.Errorf("explain %+v", e[0])
	}
	for _, r := range Default().Rules() {
		if r.NeedsEstimate() {
			t.Errorf("built-in rule %s needs an estimate: the default policy must not EXPLAIN", r.Name)
		}
	}
}

func TestExplainedAccess(t *testing.T) {
	p, err := Parse("x.yaml", []byte(`version: 1
explained_access:
  table: public.customers
  key: id
  query: "SELECT customer_id FROM tickets WHERE assignee = $1 AND status <> 'closed'"
  refresh: 30s
rules:
  - {name: unexplained, scope: 1h, when: {unexplained_rows: 20}, action: alert}
`))
	if err != nil {
		t.Fatal(err)
	}
	e := p.Explained()
	if e.Schema != "public" || e.Table != "customers" || e.Key != "id" || e.Refresh != 30*time.Second || !strings.Contains(e.Query, "$1") {
		t.Errorf("Explained = %+v", e)
	}
	r := p.Rules()[0]
	if b, ok := r.Exceeded(&Figures{Unexplained: 21}); !ok || b.Measure != "unexplained_rows" {
		t.Errorf("Exceeded = %+v %v", b, ok)
	}
	if _, ok := r.Exceeded(&Figures{Unexplained: 20, Rows: 1000}); ok {
		t.Error("20 unexplained rows exceed a limit of 20")
	}
	_, err = Parse("x.yaml", []byte(`version: 1
explained_access:
  table: customers
  key: id
  query: "SELECT customer_id FROM tickets"
`))
	want := []string{
		`x.yaml:3:10: explained_access.table: want schema.table, got "customers"`,
		`x.yaml:5:10: explained_access.query: the employee's name is $1, and the query does not use it`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("errors:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
}

func TestSessionsCondition(t *testing.T) {
	p, err := Parse("s.yaml", []byte("version: 1\nrules:\n  - {name: many, when: {sessions: 3, pii_rows: 10}, action: block}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := p.Rules()[0]
	for n, want := range map[int]bool{1: false, 3: false, 4: true} {
		if got := r.Applies(&Context{User: "a", Sessions: n}); got != want {
			t.Errorf("%d sessions: Applies %v", n, got)
		}
	}
}

// TestConditionsInFixedOrder: a rule checks its context conditions in one
// order whatever the order of the file's keys, and each says why it does
// not hold.
func TestConditionsInFixedOrder(t *testing.T) {
	p := mustParse(t, `version: 1
rules:
  - name: r
    when: {not_application: [batch*], application: [psql, "batch*"], estimated_rows: 100, sessions: 2, tables: [public.customers]}
    action: block
`)
	r := ruleByName(t, p, "r")
	if !r.NeedsEstimate() || !r.NeedsSessions() {
		t.Errorf("NeedsEstimate %v, NeedsSessions %v; want both", r.NeedsEstimate(), r.NeedsSessions())
	}
	holding := Context{User: "alice", Tables: []string{"public.customers"}, Sessions: 3, EstimatedRows: 101, Application: "psql"}
	for _, tc := range []struct {
		name   string
		change func(c *Context)
		want   string
	}{
		{"every condition holds", func(*Context) {}, ""},
		{"tables first", func(c *Context) { c.Tables, c.Sessions, c.Application = nil, 1, "x" },
			"tables: the statement names no table (want any of public.customers)"},
		{"sessions before estimated_rows", func(c *Context) { c.Sessions, c.EstimatedRows = 2, 0 },
			"sessions: alice has 2 sessions open, not more than 2"},
		{"no estimate", func(c *Context) { c.EstimatedRows = 0 }, "estimated_rows: no estimate (want more than 100)"},
		{"estimate at the limit", func(c *Context) { c.EstimatedRows = 100 },
			"estimated_rows: the planner expects 100 rows, not more than 100"},
		{"application", func(c *Context) { c.Application = "DBeaver" }, `application: "DBeaver" matches none of psql, batch*`},
		{"not_application", func(c *Context) { c.Application = "batch-7" }, `not_application: "batch-7" matches batch*`},
	} {
		c := holding
		tc.change(&c)
		ok, why := r.check(&c, true)
		if ok != (tc.want == "") || why != tc.want || r.Applies(&c) != ok {
			t.Errorf("%s: check = %v, %q; want %q", tc.name, ok, why, tc.want)
		}
	}
}
