package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"time"
)

// The customers table. Every value is a function of the id, computed the same
// way in SQL (seedSQL) and in Go (customerEmail), so that lookups by email
// find a row.
var (
	firstNames = []string{"Alice", "Bruno", "Chloe", "David", "Emma", "Farid", "Giulia", "Hugo", "Ines", "Jonas",
		"Karim", "Lena", "Marco", "Nadia", "Oscar", "Paula", "Quentin", "Rosa", "Samir", "Tara",
		"Ugo", "Vera", "Walter", "Xenia", "Yann", "Zoe", "Amir", "Berit", "Carlos", "Dana"}
	lastNames = []string{"Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau",
		"Simon", "Laurent", "Lefebvre", "Michel", "Garcia", "Fournier", "Lambert", "Rousseau", "Vincent", "Muller",
		"Faure", "Andre", "Mercier", "Blanc", "Guerin", "Boyer", "Garnier", "Chevalier", "Francois", "Legrand"}
	domains = []string{"example.com", "mail.test", "inbox.example", "post.example.org", "corp.example.net"}
	cities  = []string{"Lyon", "Oslo", "Austin", "Osaka", "Porto", "Leeds", "Graz", "Quebec"}
)

func customerFirst(id int) string { return firstNames[(id*7)%len(firstNames)] }
func customerLast(id int) string  { return lastNames[(id*13)%len(lastNames)] }
func customerEmail(id int) string {
	return fmt.Sprintf("%s.%s%d@%s", strings.ToLower(customerFirst(id)), strings.ToLower(customerLast(id)), id, domains[id%len(domains)])
}

func sqlArray(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = "'" + x + "'"
	}
	return "ARRAY[" + strings.Join(q, ",") + "]"
}

// seedSQL creates and fills customers: 3 PII columns (full_name, email, phone)
// among 7.
func seedSQL(n int) []string {
	p := "lpad(((i::bigint * 7919) % 100000000)::text, 8, '0')"
	return []string{
		"DROP TABLE IF EXISTS customers",
		`CREATE TABLE customers (id int PRIMARY KEY, full_name text NOT NULL, email text NOT NULL,
			phone text NOT NULL, city text NOT NULL, plan text NOT NULL, created_at date NOT NULL)`,
		fmt.Sprintf(`INSERT INTO customers
SELECT i,
  (%[1]s)[1 + (i * 7) %% %[2]d] || ' ' || (%[3]s)[1 + (i * 13) %% %[4]d],
  lower((%[1]s)[1 + (i * 7) %% %[2]d]) || '.' || lower((%[3]s)[1 + (i * 13) %% %[4]d]) || i || '@' || (%[5]s)[1 + i %% %[6]d],
  '+33 6 ' || substr(%[7]s, 1, 2) || ' ' || substr(%[7]s, 3, 2) || ' ' || substr(%[7]s, 5, 2) || ' ' || substr(%[7]s, 7, 2),
  (%[8]s)[1 + (i * 3) %% %[9]d],
  (ARRAY['free','pro','team'])[1 + i %% 3],
  date '2020-01-01' + (i %% 2000)
FROM generate_series(1, %[10]d) i`,
			sqlArray(firstNames), len(firstNames), sqlArray(lastNames), len(lastNames),
			sqlArray(domains), len(domains), p, sqlArray(cities), len(cities), n),
		"CREATE INDEX customers_email ON customers (email)",
		"GRANT SELECT ON customers TO PUBLIC",
		"VACUUM (FREEZE, ANALYZE) customers",
	}
}

// piiRe finds the PII values the simulator knows it put in the table: a
// customer's full name, email or phone number, alone in a column or packed
// into a larger value. It is the ground truth of what a client received.
var piiRe = regexp.MustCompile(
	`[a-z]+\.[a-z]+[0-9]+@[a-z.]+` + // email
		`|\+33 6 [0-9]{2} [0-9]{2} [0-9]{2} [0-9]{2}` + // phone
		`|\b(?:` + strings.Join(firstNames, "|") + `) (?:` + strings.Join(lastNames, "|") + `)\b`) // name

func countPII(b []byte) int {
	if len(b) < 8 {
		return 0
	}
	return len(piiRe.FindAllIndex(b, -1))
}

// Roles of employees.
const (
	roleSupport = "support"
	roleAnalyst = "analyst"
	roleDBA     = "dba"
	roleBilling = "billing"
)

const billingName = "billing_batch"

type employee struct {
	Name       string `json:"name"`
	Role       string `json:"role"`
	ChangeDay  int    `json:"change_day,omitempty"` // day index from which ChangeRole applies; 0: none
	ChangeRole string `json:"change_role,omitempty"`
	HireDay    int    `json:"hire_day,omitempty"` // first working day index
	Weekends   bool   `json:"weekends,omitempty"` // works Saturdays and Sundays too
	Base       int    `json:"base_lookups,omitempty"`
	Office     string `json:"office,omitempty"` // organisation B: north, south or service
	Always     bool   `json:"always,omitempty"` // a service or job account: every day
}

func (e *employee) roleOn(day int) string {
	if e.ChangeDay > 0 && day >= e.ChangeDay {
		return e.ChangeRole
	}
	return e.Role
}

// episode is one labelled attack.
type episode struct {
	ID       int       `json:"id"`
	Type     string    `json:"type"`
	Employee string    `json:"employee"`
	Factor   float64   `json:"factor,omitempty"` // slow-and-low: multiple of the employee's normal daily volume
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	StartDay int       `json:"start_day"`
}

// Attack types.
const (
	atkBulk      = "bulk"
	atkBulkParam = "bulk-parameterized"
	atkPaging    = "paging"
	atkSlow      = "slow-and-low"
	atkStringAgg = "string_agg"
	atkJSONAgg   = "json_agg"
	atkCopy      = "copy"
	atkCursor    = "cursor"
	atkOffHours  = "off-hours"
	atkStolen    = "stolen-credential"
	atkParallel  = "parallel-sessions"
)

var attackTypes = []string{atkBulk, atkBulkParam, atkPaging, atkSlow, atkStringAgg, atkJSONAgg, atkCopy, atkCursor, atkOffHours, atkStolen, atkParallel}

// typesOf returns the attack types of an organisation.
func typesOf(org string) []string {
	if org == orgB {
		return attackTypesB
	}
	return attackTypes
}

// attackTypes returns the attack types of the world's organisation.
func (w *world) attackTypes() []string { return typesOf(w.cfg.org) }

// countPII counts the PII the simulator put in the organisation's tables
// in what a client received, as the client decodes it.
func (w *world) countPII(b []byte) int {
	count := countPII
	if w.cfg.org == orgB {
		count = countPIIB
	}
	n := count(b)
	if d, ok := clientDecode(b); ok {
		n = max(n, count(d))
	}
	return n
}

// attackClass groups attack types for the leak figures.
func attackClass(t string) string {
	switch t {
	case atkBulk, atkBulkParam, atkCopy:
		return "single statement"
	case atkStringAgg, atkJSONAgg:
		return "packed"
	case atkSlow:
		return "slow-and-low"
	case atkBBulk, atkBCopy:
		return "single statement"
	case atkBNotice, atkBException, atkBNotify, atkBLO, atkBBase64, atkBBinary:
		return "channel, one statement"
	case atkBErrors, atkBSetConfig:
		return "channel, many statements"
	case atkBSweep, atkBSSN, atkBInference:
		return "multi-statement/session"
	default:
		return "multi-statement/session"
	}
}

// stmt is one statement a client sends.
type stmt struct {
	SQL  string
	Args []any
	Copy bool // COPY ... TO STDOUT
	// Binary asks for every result column in binary format.
	Binary bool
	// Infers is the PII values the client learns once this statement is
	// answered without returning them (the last probe of a bisection).
	Infers int
	// Fails: the statement's error is its point (the channel an attack
	// uses), not a failure of the run.
	Fails bool
}

// session says which connection an event runs on.
type session struct {
	Key     string // per employee; "" is the employee's normal session of the day
	Simple  bool   // simple query protocol (psql-like); otherwise extended (an application)
	App     string // application_name
	LocalIP string // source address to dial from; "" for the default
}

// event is what one employee does at one virtual time: statements on one
// session, or, for parallel-session attacks, on several sessions at once.
type event struct {
	At       time.Time
	Emp      int
	Episode  int // index into world.episodes; -1 for normal work
	Sess     session
	Stmts    []stmt
	Parallel [][]stmt // when set, each runs on its own session Sess.Key+"-<n>", concurrently
	seq      int
}

// world is the whole simulation, built before anything runs.
type world struct {
	cfg       config
	employees []employee
	holidays  []int
	episodes  []episode
	events    []event
	// active[emp][day]: the employee did normal work that day.
	active [][]bool
	// tickets[emp]: the customers of the open tickets assigned to a
	// support agent, which explain their lookups (explained_access).
	tickets [][]int
}

// Tickets: each support agent has ticketsPerAgent open tickets; one lookup
// in ten of their work is of a customer no ticket of theirs names (a call
// without a ticket).
const (
	ticketsPerAgent    = 300
	unexplainedPercent = 10
)

func (w *world) date(day int) time.Time { return w.cfg.start.AddDate(0, 0, day) }

func (w *world) dayOf(t time.Time) int {
	return int(t.Sub(w.cfg.start) / (24 * time.Hour))
}

func (w *world) weekend(day int) bool {
	wd := w.date(day).Weekday()
	return wd == time.Saturday || wd == time.Sunday
}

func (w *world) holiday(day int) bool { return slices.Contains(w.holidays, day) }

// works reports whether e does office work on day.
func (w *world) works(e *employee, day int) bool {
	if day < e.HireDay {
		return false
	}
	if e.Role == roleBilling || e.Always {
		return true
	}
	if w.holiday(day) {
		return false
	}
	return !w.weekend(day) || e.Weekends
}

// buildWorld makes the employees, the normal work, and the attacks.
func buildWorld(cfg config) *world {
	w := &world{cfg: cfg}
	if cfg.org == orgB {
		w.buildB(cfg)
		for i := range w.events {
			w.events[i].seq = i
		}
		slices.SortStableFunc(w.events, func(a, b event) int { return a.At.Compare(b.At) })
		return w
	}
	rng := rand.New(rand.NewPCG(cfg.seed, 0x5ee0))
	w.makeEmployees(rng)
	for _, d := range []int{cfg.days * 11 / 30, cfg.days * 24 / 30} {
		for d < cfg.days && w.weekend(d) {
			d++
		}
		if cfg.days >= 10 && d < cfg.days && !w.holiday(d) {
			w.holidays = append(w.holidays, d)
		}
	}
	w.active = make([][]bool, len(w.employees))
	for i := range w.active {
		w.active[i] = make([]bool, cfg.days)
	}
	w.makeTickets(rand.New(rand.NewPCG(cfg.seed, 0x71c7)))
	w.makeNormal(rand.New(rand.NewPCG(cfg.seed, 0x0a11)))
	w.makeAttacks(rand.New(rand.NewPCG(cfg.seed, 0xa77a)))
	for i := range w.events {
		w.events[i].seq = i
	}
	slices.SortStableFunc(w.events, func(a, b event) int { return a.At.Compare(b.At) })
	return w
}

func (w *world) makeEmployees(rng *rand.Rand) {
	n := w.cfg.employees
	dbas := max(1, n/25)
	analysts := max(1, n*15/100)
	support := n - 1 - dbas - analysts
	for i := range support {
		e := employee{Name: fmt.Sprintf("agent%02d", i+1), Role: roleSupport, Base: 20 + rng.IntN(61)}
		e.Weekends = rng.IntN(10) == 0
		w.employees = append(w.employees, e)
	}
	for i := range analysts {
		w.employees = append(w.employees, employee{Name: fmt.Sprintf("analyst%02d", i+1), Role: roleAnalyst})
	}
	for i := range dbas {
		w.employees = append(w.employees, employee{Name: fmt.Sprintf("dba%02d", i+1), Role: roleDBA})
	}
	w.employees = append(w.employees, employee{Name: billingName, Role: roleBilling})
	// The new hire (day 10) and the role change (support to analyst, day 15),
	// when the run is long enough; the last support agents, who are not
	// weekend workers and not chosen as attackers first.
	if w.cfg.days > 10 && support >= 3 {
		e := &w.employees[support-1]
		e.HireDay, e.Weekends = 9, false
	}
	if w.cfg.days > 15 && support >= 3 {
		e := &w.employees[support-2]
		e.ChangeDay, e.ChangeRole, e.Weekends = 14, roleAnalyst, false
	}
}

func (w *world) add(e event) { w.events = append(w.events, e) }

// workMinute returns a random time on day within working hours (09:00-12:30,
// 13:30-17:30).
func (w *world) workMinute(rng *rand.Rand, day int) time.Time {
	m := rng.IntN(210 + 240)
	if m < 210 {
		m += 9 * 60
	} else {
		m += 13*60 + 30 - 210
	}
	return w.date(day).Add(time.Duration(m) * time.Minute)
}

// lookup is one support lookup: a single customer by id or by email, or now
// and then a short list.
// makeTickets assigns open tickets to every employee who does support
// work at some point.
func (w *world) makeTickets(rng *rand.Rand) {
	w.tickets = make([][]int, len(w.employees))
	for i, e := range w.employees {
		if e.Role != roleSupport && e.ChangeRole != roleSupport {
			continue
		}
		for range ticketsPerAgent {
			w.tickets[i] = append(w.tickets[i], 1+rng.IntN(w.cfg.customers))
		}
	}
}

// ticketsSQL inserts the tickets (explained_access names them).
func (w *world) ticketsSQL() []string {
	out := []string{"DROP TABLE IF EXISTS tickets",
		"CREATE TABLE tickets (id serial PRIMARY KEY, customer_id int NOT NULL, assignee text NOT NULL, status text NOT NULL)"}
	for i, ids := range w.tickets {
		if len(ids) == 0 {
			continue
		}
		var b strings.Builder
		b.WriteString("INSERT INTO tickets (customer_id, assignee, status) VALUES ")
		for k, id := range ids {
			if k > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "(%d, '%s', 'open')", id, w.employees[i].Name)
		}
		out = append(out, b.String())
	}
	return append(out, "CREATE INDEX tickets_assignee ON tickets (assignee, status)")
}

// lookup is one lookup of support work by employee emp: of a customer of
// one of their tickets, but for one in ten.
func (w *world) lookup(rng *rand.Rand, emp int) stmt {
	id := 1 + rng.IntN(w.cfg.customers)
	if t := w.tickets[emp]; len(t) > 0 && rng.IntN(100) >= unexplainedPercent {
		id = t[rng.IntN(len(t))]
	}
	switch r := rng.IntN(100); {
	case r < 3:
		return stmt{SQL: "SELECT id, full_name, email, city FROM customers WHERE city = $1 AND id > $2 ORDER BY id LIMIT $3",
			Args: []any{cities[rng.IntN(len(cities))], id, 5 + rng.IntN(16)}}
	case r < 60:
		return stmt{SQL: "SELECT id, full_name, email, phone, city, plan FROM customers WHERE id = $1", Args: []any{id}}
	default:
		return stmt{SQL: "SELECT id, full_name, email, phone, plan FROM customers WHERE email = $1", Args: []any{customerEmail(id)}}
	}
}

var analystQueries = []string{
	"SELECT city, count(*) FROM customers GROUP BY city ORDER BY city",
	"SELECT split_part(email, '@', 2) AS domain, count(*) FROM customers GROUP BY 1 ORDER BY 2 DESC",
	"SELECT plan, count(*), min(created_at), max(created_at) FROM customers GROUP BY plan",
	"SELECT date_trunc('month', created_at) AS month, count(*) FROM customers GROUP BY 1 ORDER BY 1",
	"SELECT city, plan, count(*) FROM customers GROUP BY city, plan ORDER BY 3 DESC LIMIT 10",
	"SELECT count(*) FROM customers WHERE created_at > date '2024-01-01'",
}

var dbaQueries = []string{
	"SELECT pid, usename, application_name, state, wait_event_type, backend_start FROM pg_stat_activity",
	"SELECT relname, n_live_tup, n_dead_tup, last_autovacuum, last_analyze FROM pg_stat_user_tables",
	"SELECT indexrelname, idx_scan, pg_size_pretty(pg_relation_size(indexrelid)) FROM pg_stat_user_indexes",
	"SELECT datname, numbackends, xact_commit, blks_hit, blks_read FROM pg_stat_database",
	"SELECT locktype, mode, granted, count(*) FROM pg_locks GROUP BY 1, 2, 3",
}

var appSession = session{App: "support-console"}

func (w *world) makeNormal(rng *rand.Rand) {
	for day := range w.cfg.days {
		for i := range w.employees {
			e := &w.employees[i]
			if !w.works(e, day) {
				continue
			}
			w.active[i][day] = true
			switch e.roleOn(day) {
			case roleSupport:
				n := int(math.Round(float64(e.Base) * (0.7 + 0.6*rng.Float64())))
				for range n {
					w.add(event{At: w.workMinute(rng, day), Emp: i, Episode: -1, Sess: appSession, Stmts: []stmt{w.lookup(rng, i)}})
				}
			case roleAnalyst:
				sess := session{Simple: true, App: "DataGrip"}
				for range 3 + rng.IntN(6) {
					w.add(event{At: w.workMinute(rng, day), Emp: i, Episode: -1, Sess: sess,
						Stmts: []stmt{{SQL: analystQueries[rng.IntN(len(analystQueries))]}}})
				}
				if rng.IntN(50) == 0 { // a rare look at a few rows
					w.add(event{At: w.workMinute(rng, day), Emp: i, Episode: -1, Sess: sess,
						Stmts: []stmt{{SQL: fmt.Sprintf("SELECT full_name, email, city FROM customers WHERE city = '%s' LIMIT 3", cities[rng.IntN(len(cities))])}}})
				}
			case roleDBA:
				sess := session{Simple: true, App: "psql"}
				w.add(event{At: w.date(day).Add(9*time.Hour + time.Duration(rng.IntN(30))*time.Minute), Emp: i, Episode: -1, Sess: sess,
					Stmts: []stmt{{SQL: dbaQueries[0]}, {SQL: dbaQueries[1]}}})
				for range 2 + rng.IntN(4) {
					w.add(event{At: w.workMinute(rng, day), Emp: i, Episode: -1, Sess: sess,
						Stmts: []stmt{{SQL: dbaQueries[rng.IntN(len(dbaQueries))]}}})
				}
				w.add(event{At: w.date(day).Add(12*time.Hour + time.Duration(rng.IntN(60))*time.Minute), Emp: i, Episode: -1, Sess: sess,
					Stmts: []stmt{{SQL: "VACUUM (ANALYZE) customers"}}})
				if rng.IntN(100) < 15 { // checking a few rows for a ticket
					ids := make([]string, 2+rng.IntN(4))
					for k := range ids {
						ids[k] = fmt.Sprint(1 + rng.IntN(w.cfg.customers))
					}
					w.add(event{At: w.workMinute(rng, day), Emp: i, Episode: -1, Sess: sess,
						Stmts: []stmt{{SQL: "SELECT * FROM customers WHERE id IN (" + strings.Join(ids, ", ") + ")"}}})
				}
			case roleBilling:
				from := 1 + (day*2000)%(w.cfg.customers-2000)
				w.add(event{At: w.date(day).Add(2 * time.Hour), Emp: i, Episode: -1, Sess: session{App: "billing-run"},
					Stmts: []stmt{{SQL: "SELECT id, full_name, email FROM customers WHERE id BETWEEN $1 AND $2 ORDER BY id",
						Args: []any{from, from + 1999}}}})
			}
		}
	}
}

// makeAttacks injects the episodes. Each point attack gets a support agent
// not yet used by another episode when there is one, on a day the agent
// works (off-hours and stolen-credential attacks: the night before such a
// day).
func (w *world) makeAttacks(rng *rand.Rand) {
	used := map[int]bool{}
	usedDay := map[[2]int]bool{}
	pick := func(day int) int {
		var free, all, other []int
		for i := range w.employees {
			e := &w.employees[i]
			if e.roleOn(day) != roleSupport || !w.works(e, day) || e.HireDay > 0 || e.ChangeDay > 0 {
				continue
			}
			all = append(all, i)
			if !used[i] {
				free = append(free, i)
			}
			if !usedDay[[2]int{i, day}] {
				other = append(other, i)
			}
		}
		if len(free) == 0 {
			free = other
		}
		if len(free) == 0 {
			free = all
		}
		if len(free) == 0 {
			return -1
		}
		i := free[rng.IntN(len(free))]
		used[i] = true
		usedDay[[2]int{i, day}] = true
		return i
	}
	for _, typ := range w.cfg.attacks {
		if typ == atkSlow {
			w.makeSlow(rng, pick)
			continue
		}
		for range w.cfg.episodes {
			var day, emp int
			for try := 0; ; try++ {
				day = rng.IntN(w.cfg.days)
				// A working day (for night attacks, the night before
				// one), not the first, when the run has such days.
				if try < 100 && (w.cfg.days > 2 && day == 0 || w.weekend(day) || w.holiday(day)) {
					continue
				}
				if emp = pick(day); emp >= 0 || try > 100 {
					break
				}
			}
			if emp < 0 {
				continue
			}
			w.makeEpisode(rng, typ, emp, day)
		}
	}
}

func (w *world) newEpisode(typ string, emp int, start, end time.Time) int {
	w.episodes = append(w.episodes, episode{ID: len(w.episodes) + 1, Type: typ, Employee: w.employees[emp].Name,
		Start: start, End: end, StartDay: w.dayOf(start)})
	return len(w.episodes) - 1
}

func (w *world) makeEpisode(rng *rand.Rand, typ string, emp, day int) {
	start := w.date(day).Add(10*time.Hour + time.Duration(rng.IntN(6*60))*time.Minute)
	psql := session{Key: "attack", Simple: true, App: "psql"}
	var evs []event
	at := func(d time.Duration, s session, stmts ...stmt) {
		evs = append(evs, event{At: start.Add(d), Emp: emp, Sess: s, Stmts: stmts})
	}
	switch typ {
	case atkBulk:
		at(0, psql, stmt{SQL: "SELECT * FROM customers"})
	case atkBulkParam:
		// From the application's session, the way its code asks: the
		// range comes as a bound parameter, so the text alone says
		// nothing of how many rows it reads.
		at(0, appSession, stmt{SQL: "SELECT id, full_name, email, phone FROM customers WHERE id > $1", Args: []any{0}})
	case atkStringAgg:
		at(0, psql, stmt{SQL: "SELECT string_agg(full_name || ' <' || email || '>', ', ') AS packed FROM customers WHERE id <= 2000"})
	case atkJSONAgg:
		at(0, psql, stmt{SQL: "SELECT json_agg(json_build_object('name', full_name, 'email', email, 'phone', phone)) FROM customers WHERE id <= 1000"})
	case atkCopy:
		at(0, psql, stmt{SQL: "COPY customers TO STDOUT", Copy: true})
	case atkPaging:
		// 50 rows a page, a page every 15 seconds for 10 minutes.
		for p := range 40 {
			at(time.Duration(p)*15*time.Second, psql, stmt{SQL: fmt.Sprintf("SELECT id, full_name, email FROM customers ORDER BY id LIMIT 50 OFFSET %d", p*50)})
		}
	case atkCursor:
		at(0, psql, stmt{SQL: "BEGIN"}, stmt{SQL: "DECLARE c NO SCROLL CURSOR FOR SELECT id, full_name, email, phone FROM customers ORDER BY id"})
		for f := range 30 {
			at(time.Duration(f+1)*10*time.Second, psql, stmt{SQL: "FETCH 100 FROM c"})
		}
		at(310*time.Second, psql, stmt{SQL: "CLOSE c"}, stmt{SQL: "COMMIT"})
	case atkOffHours:
		// A few hundred customers one at a time, from 03:00, ten a minute.
		start = w.date(day).Add(3*time.Hour + time.Duration(rng.IntN(20))*time.Minute)
		for m := range 30 {
			var stmts []stmt
			for range 10 {
				stmts = append(stmts, stmt{SQL: "SELECT id, full_name, email, phone, city, plan FROM customers WHERE id = $1",
					Args: []any{1 + rng.IntN(w.cfg.customers)}})
			}
			at(time.Duration(m)*time.Minute, appSession, stmts...)
		}
	case atkStolen:
		// At night, from another address and another client program.
		start = w.date(day).Add(time.Hour + time.Duration(rng.IntN(180))*time.Minute)
		s := session{Key: "stolen", Simple: true, App: "DBeaver 24.1.0", LocalIP: fmt.Sprintf("127.0.0.%d", 10+len(w.episodes)%200)}
		base := 1 + rng.IntN(w.cfg.customers-2000)
		for k := range 20 {
			at(time.Duration(k)*30*time.Second, s, stmt{SQL: fmt.Sprintf("SELECT id, full_name, email, phone FROM customers WHERE id >= %d ORDER BY id LIMIT 50", base+50*k)})
		}
	case atkParallel:
		// Four sessions at once, each reading its own slice, 40 rows a
		// statement, ten rounds 30 seconds apart.
		base := 1 + rng.IntN(w.cfg.customers-2000)
		for r := range 10 {
			var par [][]stmt
			for s := range 4 {
				from := base + (s*10+r)*40
				par = append(par, []stmt{{SQL: fmt.Sprintf("SELECT id, full_name, email FROM customers WHERE id BETWEEN %d AND %d", from, from+39)}})
			}
			evs = append(evs, event{At: start.Add(time.Duration(r) * 30 * time.Second), Emp: emp, Sess: session{Key: "par", Simple: true, App: "psql"}, Parallel: par})
		}
	}
	end := evs[len(evs)-1].At.Add(time.Minute)
	ep := w.newEpisode(typ, emp, start, end)
	for _, e := range evs {
		e.Episode = ep
		if e.Sess.Key != "" {
			// A session of its own: an earlier episode's session may be
			// in an aborted transaction.
			e.Sess.Key = fmt.Sprintf("%s-%d", e.Sess.Key, ep+1)
		}
		w.add(e)
	}
}

// makeSlow adds slow-and-low episodes: from a start day to the end of the
// run, every working day, extra single lookups amounting to factor times the
// employee's own normal daily volume, spread through working hours, on the
// employee's normal session.
func (w *world) makeSlow(rng *rand.Rand, pick func(int) int) {
	startDay := min(w.cfg.slowFrom-1, w.cfg.days-1)
	if w.cfg.days < 14 {
		startDay = min(1, w.cfg.days-1)
	}
	for range max(1, w.cfg.episodes/3) {
		for _, factor := range []float64{0.5, 1, 2} {
			emp := pick(startDay)
			if emp < 0 {
				return
			}
			e := &w.employees[emp]
			start := w.date(startDay)
			end := w.date(w.cfg.days)
			ep := w.newEpisode(atkSlow, emp, start, end)
			w.episodes[ep].Factor = factor
			for day := startDay; day < w.cfg.days; day++ {
				if !w.works(e, day) {
					continue
				}
				n := int(math.Round(factor * float64(e.Base)))
				for range n {
					id := 1 + rng.IntN(w.cfg.customers)
					w.add(event{At: w.workMinute(rng, day), Emp: emp, Episode: ep, Sess: appSession,
						Stmts: []stmt{{SQL: "SELECT id, full_name, email, phone, city, plan FROM customers WHERE id = $1", Args: []any{id}}}})
				}
			}
		}
	}
}
