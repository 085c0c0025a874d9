package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// condition is one context condition of a rule's when (tables, statements,
// hours, ...): whether it holds for a statement's Context, known before any
// row, and if not why, in words. A rule holds them in contextConditions
// order.
type condition interface {
	holds(r *Rule, c *Context) bool
	// why says why the condition does not hold for c, starting with its
	// key ("hours: 23:10 UTC is outside 09:00-18:00"); called only when
	// holds is false.
	why(r *Rule, c *Context) string
}

// contextConditions are the keys of a rule's when that are context
// conditions, in the order a rule checks them (cheapest and most telling
// first), each with how to read it. read reports an error itself and
// returns nil then. A new condition is a type with holds and why, and an
// entry here.
var contextConditions = []struct {
	key  string
	read func(ps *parser, v *yaml.Node) condition
}{
	{"tables", func(ps *parser, v *yaml.Node) condition { return nonNil(tablesCond(ps.tables(v))) }},
	{"statements", func(ps *parser, v *yaml.Node) condition { return nonNil(kindsCond(ps.kinds(v))) }},
	{"sessions", func(ps *parser, v *yaml.Node) condition {
		if l, ok := ps.limit(v, "sessions"); ok {
			return sessionsCond(l)
		}
		return nil
	}},
	{"estimated_rows", func(ps *parser, v *yaml.Node) condition {
		if l, ok := ps.limit(v, "estimated_rows"); ok {
			return estimateCond(l)
		}
		return nil
	}},
	{"hours", func(ps *parser, v *yaml.Node) condition {
		if h, texts := ps.hours(v); h != nil {
			return hoursCond{ranges: h, texts: texts}
		}
		return nil
	}},
	{"days", func(ps *parser, v *yaml.Node) condition {
		if d := ps.days(v); d != 0 {
			return daysCond(d)
		}
		return nil
	}},
	{"client", func(ps *parser, v *yaml.Node) condition { return nonNil(clientCond(ps.nets(v, "client"))) }},
	{"not_client", func(ps *parser, v *yaml.Node) condition { return nonNil(notClientCond(ps.nets(v, "not_client"))) }},
	{"application", func(ps *parser, v *yaml.Node) condition { return nonNil(appCondList(ps.apps(v, "application"))) }},
	{"not_application", func(ps *parser, v *yaml.Node) condition {
		return nonNil(notAppCondList(ps.apps(v, "not_application")))
	}},
	{"service_account", func(ps *parser, v *yaml.Node) condition {
		if set, texts := ps.serviceConds(v); set != 0 {
			return serviceCond{set: set, texts: texts}
		}
		return nil
	}},
}

// nonNil returns c, or nil when c is a nil list: what the list readers
// return on an error.
func nonNil[T interface {
	~[]E
	condition
}, E any](c T) condition {
	if c == nil {
		return nil
	}
	return c
}

// conditionOf returns the rule's condition of type T, if it has one.
func conditionOf[T condition](r *Rule) (T, bool) {
	for _, c := range r.conds {
		if t, ok := c.(T); ok {
			return t, true
		}
	}
	var zero T
	return zero, false
}

// tablesCond holds when the statement names a table matching one of the
// patterns, or may name tables beyond those known (the side of caution).
type tablesCond []tableCond

func (t tablesCond) holds(_ *Rule, c *Context) bool {
	if c.TablesUnknown {
		return true
	}
	for _, name := range c.Tables {
		for i := range t {
			if t[i].pat.match(name) {
				return true
			}
		}
	}
	return false
}

func (t tablesCond) why(_ *Rule, c *Context) string {
	texts := make([]string, len(t))
	for i := range t {
		texts[i] = t[i].text
	}
	if len(c.Tables) == 0 {
		return fmt.Sprintf("tables: the statement names no table (want any of %s)", strings.Join(texts, ", "))
	}
	return fmt.Sprintf("tables: %s matches none of %s", strings.Join(c.Tables, ", "), strings.Join(texts, ", "))
}

// kindsCond holds when the statement is of one of the kinds.
type kindsCond []StatementKind

func (k kindsCond) holds(_ *Rule, c *Context) bool {
	return slices.ContainsFunc(c.Kinds, func(x StatementKind) bool { return slices.Contains(k, x) })
}

func (k kindsCond) why(_ *Rule, c *Context) string {
	return fmt.Sprintf("statements: %s is none of %s", kindList(c.Kinds), kindList(k))
}

// sessionsCond holds when the employee has more sessions open than it.
type sessionsCond int64

func (s sessionsCond) holds(_ *Rule, c *Context) bool { return int64(c.Sessions) > int64(s) }

func (s sessionsCond) why(_ *Rule, c *Context) string {
	return fmt.Sprintf("sessions: %s has %d sessions open, not more than %d", c.User, c.Sessions, s)
}

// estimateCond holds when the planner expects more rows than it.
type estimateCond int64

func (e estimateCond) holds(_ *Rule, c *Context) bool { return c.EstimatedRows > int64(e) }

func (e estimateCond) why(_ *Rule, c *Context) string {
	if c.EstimatedRows == 0 {
		return fmt.Sprintf("estimated_rows: no estimate (want more than %d)", e)
	}
	return fmt.Sprintf("estimated_rows: the planner expects %d rows, not more than %d", c.EstimatedRows, e)
}

// hoursCond holds when the statement runs within one of the ranges, in
// the policy's time zone.
type hoursCond struct {
	ranges []hourRange
	texts  []string
}

func (h hoursCond) holds(r *Rule, c *Context) bool {
	local := c.Time.In(r.location())
	minute := local.Hour()*60 + local.Minute()
	return slices.ContainsFunc(h.ranges, func(x hourRange) bool { return x.contains(minute) })
}

func (h hoursCond) why(r *Rule, c *Context) string {
	return fmt.Sprintf("hours: %s %s is outside %s", c.Time.In(r.location()).Format("15:04"), r.location(), strings.Join(h.texts, ", "))
}

// daysCond holds when the statement runs on one of the days (bit
// 1<<time.Weekday), in the policy's time zone.
type daysCond uint8

func (d daysCond) holds(r *Rule, c *Context) bool {
	return d&(1<<c.Time.In(r.location()).Weekday()) != 0
}

func (d daysCond) why(r *Rule, c *Context) string {
	return fmt.Sprintf("days: %s (%s) is not one of %s", dayNames[c.Time.In(r.location()).Weekday()], r.location(), d.list())
}

// list lists the days from Monday.
func (d daysCond) list() string {
	var names []string
	for i := 1; i <= 7; i++ {
		if w := time.Weekday(i % 7); d&(1<<w) != 0 {
			names = append(names, dayNames[w])
		}
	}
	return strings.Join(names, ", ")
}

// clientAddr is c's client address as the network conditions compare it.
func clientAddr(c *Context) netip.Addr { return c.ClientAddr.WithZone("").Unmap() }

// clientCond holds when the client address is in one of the networks.
type clientCond []netCond

func (n clientCond) holds(_ *Rule, c *Context) bool { return netMatch(n, clientAddr(c)) }

func (n clientCond) why(_ *Rule, c *Context) string {
	addr := clientAddr(c)
	if !addr.IsValid() {
		return fmt.Sprintf("client: the client address is unknown (want one of %s)", netList(n))
	}
	return fmt.Sprintf("client: %s is in none of %s", addr, netList(n))
}

// notClientCond holds when the client address is in none of the networks.
type notClientCond []netCond

func (n notClientCond) holds(_ *Rule, c *Context) bool { return !netMatch(n, clientAddr(c)) }

func (n notClientCond) why(_ *Rule, c *Context) string {
	addr := clientAddr(c)
	for _, x := range n {
		if x.prefix.Contains(addr) {
			return fmt.Sprintf("not_client: %s is in %s", addr, x.text)
		}
	}
	return ""
}

// appCondList holds when application_name matches one of the patterns.
type appCondList []appCond

func (a appCondList) holds(_ *Rule, c *Context) bool { return appMatch(a, c.Application) }

func (a appCondList) why(_ *Rule, c *Context) string {
	texts := make([]string, len(a))
	for i := range a {
		texts[i] = a[i].text
	}
	return fmt.Sprintf("application: %q matches none of %s", c.Application, strings.Join(texts, ", "))
}

// notAppCondList holds when application_name matches none of the patterns.
type notAppCondList []appCond

func (a notAppCondList) holds(_ *Rule, c *Context) bool { return !appMatch(a, c.Application) }

func (a notAppCondList) why(_ *Rule, c *Context) string {
	for i := range a {
		if a[i].glob.match(c.Application) {
			return fmt.Sprintf("not_application: %q matches %s", c.Application, a[i].text)
		}
	}
	return ""
}

// serviceCond holds when the statement's use of a service account is one
// of set's (service* bits).
type serviceCond struct {
	set   uint8
	texts []string
}

func (s serviceCond) holds(_ *Rule, c *Context) bool { return serviceMatch(s.set, &c.Service) }

func (s serviceCond) why(_ *Rule, c *Context) string { return serviceWhy(s.texts, &c.Service) }
