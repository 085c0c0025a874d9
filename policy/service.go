package policy

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ServiceAccount is a database role an application shares among its users
// (a connection pool): statements on it may name their employee with a
// signed tag (package identity/tag), and are then counted against that
// employee. Its fields are what the file says; treat them as read-only.
type ServiceAccount struct {
	// Role is the database role.
	Role string
	// KeyEnv names the environment variable, KeyFile the file, that holds
	// the key the application signs its tags with; exactly one is set. The
	// key itself is never in the policy.
	KeyEnv, KeyFile string
	// Applications are application_name globs and Clients CIDR prefixes
	// the service connects with; a session outside them is unusual (a
	// person at a console with the service's password). Empty: any.
	Applications, Clients []string
	// MaxSkew is how far a tag's timestamp may be from pgwarden's clock
	// (default 5m).
	MaxSkew time.Duration
	// Line is where the entry starts in the file.
	Line int

	apps []appCond
	nets []netCond
}

// defaultMaxSkew is a service account's max_skew when the file gives none.
const defaultMaxSkew = 5 * time.Minute

// ServiceUse is what a statement's Context says about its service account.
type ServiceUse struct {
	// Account is the session's database role when it is one of the
	// policy's service accounts; "" otherwise, and the rest is unset.
	Account string
	// Tagged: a valid tag names the statement's employee.
	Tagged bool
	// BadTag: the statement carried a tag that was rejected (malformed,
	// badly signed, expired); it counts against the service account.
	BadTag bool
	// Unusual: the session's client address or application is outside
	// the account's usual ones (ServiceAccount.Unusual).
	Unusual bool
}

// ServiceAccounts returns the policy's service accounts in file order.
func (p *Policy) ServiceAccounts() []ServiceAccount {
	out := make([]ServiceAccount, len(p.services))
	for i, sa := range p.services {
		out[i] = *sa
	}
	return out
}

// ServiceAccount returns the service account whose role is role; nil when
// the role is not one.
func (p *Policy) ServiceAccount(role string) *ServiceAccount {
	for _, sa := range p.services {
		if sa.Role == role {
			return sa
		}
	}
	return nil
}

// Unusual reports whether a session of the account, from addr with
// application_name app, is outside its usual applications and clients,
// and says why in words. An unknown address (a Unix socket) is in no
// network.
func (sa *ServiceAccount) Unusual(app string, addr netip.Addr) (string, bool) {
	if sa.apps != nil && !appMatch(sa.apps, app) {
		return fmt.Sprintf("application %q matches none of %s", app, strings.Join(sa.Applications, ", ")), true
	}
	addr = addr.WithZone("").Unmap()
	if sa.nets != nil && !netMatch(sa.nets, addr) {
		if !addr.IsValid() {
			return fmt.Sprintf("the client address is unknown (usual: %s)", netList(sa.nets)), true
		}
		return fmt.Sprintf("client %s is in none of %s", addr, netList(sa.nets)), true
	}
	return "", false
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (ps *parser) serviceAccounts(n *yaml.Node) {
	roles := make(map[string]int)
	ps.sequence(n, "service_accounts", func(item *yaml.Node) {
		const what = "service_accounts entry"
		sa := &ServiceAccount{Line: item.Line, MaxSkew: defaultMaxSkew}
		ok := true
		var roleNode *yaml.Node
		seen := ps.mapping(item, what, map[string]field{
			"role": func(v *yaml.Node) {
				s, good := ps.str(v, "role")
				if good && s == "" {
					ps.errorf(v, "role: empty role name")
					good = false
				}
				sa.Role, roleNode, ok = s, v, ok && good
			},
			"key_env": func(v *yaml.Node) {
				s, good := ps.str(v, "key_env")
				if good && !envName.MatchString(s) {
					ps.errorf(v, "key_env: %q is not an environment variable name", s)
					good = false
				}
				sa.KeyEnv, ok = s, ok && good
			},
			"key_file": func(v *yaml.Node) {
				s, good := ps.str(v, "key_file")
				if good && s == "" {
					ps.errorf(v, "key_file: empty path")
					good = false
				}
				sa.KeyFile, ok = s, ok && good
			},
			"applications": func(v *yaml.Node) {
				sa.apps = ps.apps(v, "applications")
				for _, a := range sa.apps {
					sa.Applications = append(sa.Applications, a.text)
				}
				ok = ok && sa.apps != nil
			},
			"clients": func(v *yaml.Node) {
				sa.nets = ps.nets(v, "clients")
				for _, c := range sa.nets {
					sa.Clients = append(sa.Clients, c.text)
				}
				ok = ok && sa.nets != nil
			},
			"max_skew": func(v *yaml.Node) {
				s, good := ps.str(v, "max_skew")
				if good {
					d, err := time.ParseDuration(s)
					if err != nil || d <= 0 || d > 24*time.Hour {
						ps.errorf(v, "max_skew: want a positive duration up to 24h such as 5m, got %q", s)
						good = false
					}
					sa.MaxSkew = d
				}
				ok = ok && good
			},
		})
		if seen == nil {
			return
		}
		if !ps.required(item, seen, what, "role") {
			ok = false
		}
		switch {
		case seen["key_env"] && seen["key_file"]:
			ps.errorf(item, "%s: key_env and key_file are exclusive", what)
			ok = false
		case !seen["key_env"] && !seen["key_file"]:
			ps.errorf(item, "%s: missing key_env or key_file (where the signing key is read from)", what)
			ok = false
		}
		if roleNode != nil && sa.Role != "" {
			if line, dup := roles[sa.Role]; dup {
				ps.errorf(roleNode, "service account %q listed twice (first at line %d)", sa.Role, line)
				ok = false
			} else {
				roles[sa.Role] = roleNode.Line
			}
		}
		if ok {
			ps.p.services = append(ps.p.services, sa)
		}
	})
}

// Values of a rule's service_account condition, as bits.
const (
	serviceAny uint8 = 1 << iota
	serviceTagged
	serviceUntagged
	serviceBadTag
	serviceUnusual
)

var serviceValues = []string{"any", "tagged", "untagged", "bad_tag", "unusual"}

// serviceConds reads a service_account condition: one value or a list.
func (ps *parser) serviceConds(n *yaml.Node) (uint8, []string) {
	var set uint8
	var texts []string
	one := func(v *yaml.Node, s string) bool {
		i := slices.Index(serviceValues, s)
		if i < 0 {
			ps.errorf(v, "service_account: unknown value %q (want %s)", s, strings.Join(serviceValues, ", "))
			return false
		}
		if set&(1<<i) != 0 {
			ps.errorf(v, "service_account: %q listed twice", s)
			return false
		}
		set |= 1 << i
		texts = append(texts, s)
		return true
	}
	var ok bool
	if n.Kind == yaml.ScalarNode && !isNull(n) {
		var s string
		if s, ok = ps.str(n, "service_account"); ok {
			ok = one(n, s)
		}
	} else {
		ok = ps.stringList(n, "service_account", one)
	}
	if !ok {
		return 0, nil
	}
	ps.serviceRefs = append(ps.serviceRefs, n)
	return set, texts
}

// serviceMatch reports whether a service_account condition holds.
func serviceMatch(set uint8, u *ServiceUse) bool {
	if u.Account == "" {
		return false
	}
	return set&serviceAny != 0 ||
		set&serviceTagged != 0 && u.Tagged ||
		set&serviceUntagged != 0 && !u.Tagged ||
		set&serviceBadTag != 0 && u.BadTag ||
		set&serviceUnusual != 0 && u.Unusual
}

// serviceWhy says why a service_account condition does not hold.
func serviceWhy(texts []string, u *ServiceUse) string {
	if u.Account == "" {
		return "service_account: the session's role is not a service account"
	}
	var is []string
	if u.Tagged {
		is = append(is, "tagged")
	} else {
		is = append(is, "untagged")
	}
	if u.BadTag {
		is = append(is, "bad_tag")
	}
	if u.Unusual {
		is = append(is, "unusual")
	}
	return fmt.Sprintf("service_account: the statement on %s is %s, none of %s", u.Account, strings.Join(is, ", "), strings.Join(texts, ", "))
}
