package policy

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

const servicePolicy = `version: 1
service_accounts:
  - role: crm_app
    key_env: PGWARDEN_CRM_KEY
    applications: ["crm-*"]
    clients: ["10.1.0.0/16", 192.168.7.7]
  - role: billing
    key_file: /etc/pgwarden/billing.key
    max_skew: 30s
rules:
  - name: svc-interactive
    when:
      service_account: untagged
      pii_values: 0
    action: block
  - name: svc-unusual
    when: {service_account: [unusual, bad_tag]}
    action: alert
  - name: svc-any
    when: {service_account: any}
    action: log
  - name: svc-tagged
    subjects: [alice]
    when: {service_account: tagged}
    action: log
`

func TestServiceAccounts(t *testing.T) {
	p := mustParse(t, servicePolicy)
	got := p.ServiceAccounts()
	want := []ServiceAccount{
		{Role: "crm_app", KeyEnv: "PGWARDEN_CRM_KEY", Applications: []string{"crm-*"}, Clients: []string{"10.1.0.0/16", "192.168.7.7"}, MaxSkew: 5 * time.Minute, Line: 3},
		{Role: "billing", KeyFile: "/etc/pgwarden/billing.key", MaxSkew: 30 * time.Second, Line: 7},
	}
	for i := range got {
		got[i].apps, got[i].nets = nil, nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ServiceAccounts() =\n%+v\nwant\n%+v", got, want)
	}
	if p.ServiceAccount("alice") != nil {
		t.Error("alice is not a service account")
	}
	sa := p.ServiceAccount("crm_app")
	if sa == nil {
		t.Fatal("crm_app is a service account")
	}
	for _, tc := range []struct {
		app, addr string
		unusual   bool
		why       string
	}{
		{"crm-web", "10.1.2.3", false, ""},
		{"crm-worker", "::ffff:192.168.7.7", false, ""},
		{"psql", "10.1.2.3", true, `application "psql" matches none of crm-*`},
		{"crm-web", "10.2.0.1", true, "client 10.2.0.1 is in none of 10.1.0.0/16, 192.168.7.7"},
		{"crm-web", "", true, "the client address is unknown (usual: 10.1.0.0/16, 192.168.7.7)"},
	} {
		var addr netip.Addr
		if tc.addr != "" {
			addr = netip.MustParseAddr(tc.addr)
		}
		why, unusual := sa.Unusual(tc.app, addr)
		if unusual != tc.unusual || why != tc.why {
			t.Errorf("Unusual(%q, %q) = %q, %v; want %q, %v", tc.app, tc.addr, why, unusual, tc.why, tc.unusual)
		}
	}
	if _, unusual := p.ServiceAccount("billing").Unusual("anything", netip.Addr{}); unusual {
		t.Error("an account without applications or clients is never unusual")
	}
}

func TestServiceAccountCondition(t *testing.T) {
	p := mustParse(t, servicePolicy)
	rules := map[string]*Rule{}
	for _, r := range p.Rules() {
		rules[r.Name] = r
	}
	if !rules["svc-interactive"].Thresholded() || rules["svc-unusual"].Thresholded() {
		t.Error("service_account is a context condition")
	}
	svc := func(u ServiceUse) *Context { return &Context{User: "crm_app", Service: u} }
	for _, tc := range []struct {
		rule string
		ctx  *Context
		want bool
	}{
		{"svc-interactive", svc(ServiceUse{Account: "crm_app"}), true},
		{"svc-interactive", svc(ServiceUse{Account: "crm_app", BadTag: true}), true},
		{"svc-interactive", &Context{User: "alice", Service: ServiceUse{Account: "crm_app", Tagged: true}}, false},
		{"svc-interactive", &Context{User: "bob"}, false},
		{"svc-unusual", svc(ServiceUse{Account: "crm_app", Tagged: true, Unusual: true}), true},
		{"svc-unusual", svc(ServiceUse{Account: "crm_app", BadTag: true}), true},
		{"svc-unusual", svc(ServiceUse{Account: "crm_app"}), false},
		{"svc-any", svc(ServiceUse{Account: "crm_app", Tagged: true}), true},
		{"svc-any", &Context{User: "crm_app"}, false},
		{"svc-tagged", &Context{User: "alice", Service: ServiceUse{Account: "crm_app", Tagged: true}}, true},
		{"svc-tagged", &Context{User: "alice"}, false},
	} {
		if got := rules[tc.rule].Applies(tc.ctx); got != tc.want {
			t.Errorf("%s.Applies(%+v) = %v, want %v", tc.rule, tc.ctx, got, tc.want)
		}
	}
	ex := p.Explain(svc(ServiceUse{Account: "crm_app", Tagged: true}))
	if ex[1].Applies || ex[1].Why != "service_account: the statement on crm_app is tagged, none of unusual, bad_tag" {
		t.Errorf("explain svc-unusual: %+v", ex[1])
	}
	ex = p.Explain(&Context{User: "bob"})
	if ex[2].Applies || ex[2].Why != "service_account: the session's role is not a service account" {
		t.Errorf("explain svc-any: %+v", ex[2])
	}
}

func TestServiceAccountErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want []string
	}{
		{"entries", `version: 1
service_accounts:
  - role: crm_app
    key_env: "1BAD"
  - {role: crm_app, key_env: K, key_file: /k}
  - {key_env: K}
  - {role: billing}
  - {role: "", key_file: ""}
  - {role: x, key_env: K, applications: [], clients: ["10.0.0.0/33"], max_skew: forever}
  - {role: y, key_env: K, colour: red}
  - crm_app
`, []string{
			`4:14: key_env: "1BAD" is not an environment variable name`,
			`5:5: service_accounts entry: key_env and key_file are exclusive`,
			`5:12: service account "crm_app" listed twice (first at line 3)`,
			`6:5: service_accounts entry: missing required key "role"`,
			`7:5: service_accounts entry: missing key_env or key_file (where the signing key is read from)`,
			`8:12: role: empty role name`,
			`8:26: key_file: empty path`,
			`9:41: applications: empty list (omit the condition instead)`,
			`9:55: clients: bad CIDR "10.0.0.0/33": prefix length out of range`,
			`9:81: max_skew: want a positive duration up to 24h such as 5m, got "forever"`,
			`10:27: unknown key "colour" in service_accounts entry (want applications, clients, key_env, key_file, max_skew, role)`,
			`11:5: service_accounts entry: expected a mapping, got str "crm_app"`,
		}},
		{"not a list", "version: 1\nservice_accounts: {role: x}\n", []string{
			`2:19: service_accounts: expected a list, got a mapping`,
		}},
		{"condition values", `version: 1
service_accounts: [{role: svc, key_env: K}]
rules:
  - {name: a, when: {service_account: interactive}, action: alert}
  - {name: b, when: {service_account: [untagged, untagged]}, action: alert}
  - {name: c, when: {service_account: []}, action: alert}
  - {name: d, when: {service_account: 3}, action: alert}
`, []string{
			`4:39: service_account: unknown value "interactive" (want any, tagged, untagged, bad_tag, unusual)`,
			`5:50: service_account: "untagged" listed twice`,
			`6:39: service_account: empty list (omit the condition instead)`,
			`7:39: service_account: expected a string, got int "3"`,
		}},
		{"condition without accounts", `version: 1
rules:
  - {name: a, when: {service_account: untagged}, action: alert}
`, []string{
			`3:39: service_account: the policy lists no service_accounts`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(tc.src))
			if err == nil {
				t.Fatal("no error")
			}
			var got []string
			for _, line := range strings.Split(err.Error(), "\n") {
				got = append(got, strings.TrimPrefix(line, "p.yaml:"))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
