package main

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"strings"
	"time"
)

// Organisation B is a second company model, parameterised apart from the
// first (organisation A, world.go) so that pgwarden is measured on traffic
// it was not tuned to: a clinic chain's patients, orders and payments,
// support agents in two offices, analysts, developers, superuser DBAs,
// service accounts, a nightly backup and a month-end batch, with an office
// renumbered, a team's shift moved, weekly deploys and an incident night.
// Its attacks use every channel a session can receive data on. Its
// parameters are in docs/evaluation.md, written before it first ran.
const orgB = "b"

// Roles of organisation B.
const (
	roleDeveloper = "developer"
	roleService   = "service"
	roleBackup    = "backup"
	roleBatch     = "batch"
)

// Organisation B's defaults, when the flags are not given.
const (
	bEmployees = 40
	bPatients  = 20000
	bStart     = "2026-03-02"
)

var (
	bFirst = []string{"Aiko", "Bjorn", "Chidi", "Dagny", "Eitan", "Fatima", "Goran", "Hana", "Idris", "Jana",
		"Kofi", "Leila", "Mateo", "Nkechi", "Olek", "Priya", "Rafael", "Sanna", "Tomas", "Uma",
		"Viktor", "Wen", "Yusuf", "Zainab"}
	bLast = []string{"Okafor", "Lindqvist", "Tanaka", "Haddad", "Kowalski", "Novak", "Mensah", "Castillo", "Brennan", "Nakamura",
		"Abara", "Sorensen", "Petrov", "Alvarez", "Osei", "Varga", "Kimura", "Dlamini", "Horvat", "Quispe",
		"Rahman", "Stein"}
	bDomains = []string{"halcyon-mail.test", "postbox.test", "webmail-b.test", "carrier.test"}
	bStreets = []string{"Maple", "Cedar", "Harbor", "Willow", "Juniper", "Orchard", "Granite", "Meadow", "Lakeview", "Sycamore"}
	bSuffix  = []string{"St", "Ave", "Rd", "Blvd"}
	bCities  = []string{"Springfield", "Riverton", "Fairview", "Kingsport", "Bayside", "Ashford", "Millbrook"}
)

// The planted canary patients: values no formula of the seed produces.
var bCanaries = []struct{ name, email, phone string }{
	{"Odile Marchetti", "o.marchetti.90511@postbox.test", "+1 (907) 555-0148"},
	{"Tobias Ashgrove", "t.ashgrove.31877@carrier.test", "+1 (808) 555-0193"},
	{"Wilhelmina Fennimore", "w.fennimore.66204@halcyon-mail.test", "+1 (701) 555-0127"},
}

func patientFirst(id int) string { return bFirst[(id*5)%len(bFirst)] }
func patientLast(id int) string  { return bLast[(id*7)%len(bLast)] }
func patientEmail(id int) string {
	return fmt.Sprintf("%s.%s.%d@%s", strings.ToLower(patientFirst(id)[:1]), strings.ToLower(patientLast(id)), id, bDomains[id%len(bDomains)])
}
func ssnNumber(id int) int { return (id*104729 + 12345) % 1000000000 }
func formatSSN(n int) string {
	s := fmt.Sprintf("%09d", n)
	return s[:3] + "-" + s[3:5] + "-" + s[5:]
}

// canaryIDs are the ids of the canary patients among n.
func canaryIDs(n int) []int { return []int{n * 3 / 40, n * 9 / 20, n * 4 / 5} }

// seedSQLB creates patients, orders and payments and plants the canaries.
func seedSQLB(n int) []string {
	ssn := "lpad(((i::bigint * 104729 + 12345) % 1000000000)::text, 9, '0')"
	first := fmt.Sprintf("(%s)[1 + (i * 5) %% %d]", sqlArray(bFirst), len(bFirst))
	last := fmt.Sprintf("(%s)[1 + (i * 7) %% %d]", sqlArray(bLast), len(bLast))
	addr := func(i string) string {
		return fmt.Sprintf("(1 + (%[1]s * 17) %% 9999) || ' ' || (%[2]s)[1 + (%[1]s * 3) %% %[3]d] || ' ' || (%[4]s)[1 + %[1]s %% %[5]d]",
			i, sqlArray(bStreets), len(bStreets), sqlArray(bSuffix), len(bSuffix))
	}
	out := []string{
		"DROP TABLE IF EXISTS payments, orders, patients",
		`CREATE TABLE patients (id int PRIMARY KEY, full_name text NOT NULL, email text NOT NULL, phone text NOT NULL,
			ssn text NOT NULL, address text NOT NULL, city text NOT NULL, birth_date date NOT NULL, signup_date date NOT NULL)`,
		fmt.Sprintf(`INSERT INTO patients
SELECT i, %[1]s || ' ' || %[2]s,
  lower(substr(%[1]s, 1, 1)) || '.' || lower(%[2]s) || '.' || i || '@' || (%[3]s)[1 + i %% %[4]d],
  '+1 (' || (200 + i %% 800) || ') ' || (100 + (i * 37) %% 900) || '-' || lpad(((i * 7919) %% 10000)::text, 4, '0'),
  substr(%[5]s, 1, 3) || '-' || substr(%[5]s, 4, 2) || '-' || substr(%[5]s, 6, 4),
  %[6]s,
  (%[7]s)[1 + (i * 3) %% %[8]d],
  date '1940-01-01' + (i * 37) %% 25000,
  date '2018-01-01' + i %% 2900
FROM generate_series(1, %[9]d) i`, first, last, sqlArray(bDomains), len(bDomains), ssn, addr("i"), sqlArray(bCities), len(bCities), n),
		`CREATE TABLE orders (id int PRIMARY KEY, patient_id int NOT NULL REFERENCES patients, item text NOT NULL,
			amount numeric(10,2) NOT NULL, placed_at date NOT NULL, status text NOT NULL, ship_address text NOT NULL)`,
		fmt.Sprintf(`INSERT INTO orders
SELECT j, 1 + (j * 7919) %% %[1]d, (ARRAY['consultation','lab panel','prescription','imaging','vaccine'])[1 + j %% 5],
  ((j * 31) %% 40000) / 100.0 + 5, date '2026-01-01' + j %% 90,
  (ARRAY['placed','shipped','delivered','cancelled'])[1 + j %% 4], %[2]s
FROM generate_series(1, %[3]d) j`, n, addr("(1 + (j * 7919) % "+fmt.Sprint(n)+")"), 2*n),
		"CREATE INDEX orders_patient ON orders (patient_id)",
		`CREATE TABLE payments (id serial PRIMARY KEY, order_id int NOT NULL REFERENCES orders, amount numeric(10,2) NOT NULL,
			card_last4 text NOT NULL, paid_at date NOT NULL)`,
		`INSERT INTO payments (order_id, amount, card_last4, paid_at)
SELECT id, amount, lpad(((id * 277) % 10000)::text, 4, '0'), placed_at + 1 FROM orders WHERE status IN ('shipped', 'delivered')`,
		"CREATE INDEX patients_email ON patients (email)",
	}
	ids := strings.Trim(strings.Join(strings.Fields(fmt.Sprint(canaryIDs(n))), ", "), "[]")
	out = append(out,
		fmt.Sprintf("DELETE FROM payments WHERE order_id IN (SELECT id FROM orders WHERE patient_id IN (%s))", ids),
		fmt.Sprintf("DELETE FROM orders WHERE patient_id IN (%s)", ids))
	for k, id := range canaryIDs(n) {
		c := bCanaries[k]
		out = append(out, fmt.Sprintf("UPDATE patients SET full_name = '%s', email = '%s', phone = '%s' WHERE id = %d", c.name, c.email, c.phone, id))
	}
	return append(out, "VACUUM (FREEZE, ANALYZE) patients, orders, payments")
}

// piiReB finds organisation B's PII in what a client received: names,
// emails, phones, SSNs and street addresses (birth dates are left out: a
// date alone is not told apart from an order's).
var piiReB = regexp.MustCompile(
	`[a-z]\.[a-z]+\.[0-9]+@[a-z-]+\.test` +
		`|\+1 \([0-9]{3}\) [0-9]{3}-[0-9]{4}` +
		`|\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b` +
		`|\b[0-9]{1,4} (?:` + strings.Join(bStreets, "|") + `) (?:` + strings.Join(bSuffix, "|") + `)\b` +
		`|\b(?:` + strings.Join(append(append([]string{}, bFirst...), "Odile", "Tobias", "Wilhelmina"), "|") + `) (?:` +
		strings.Join(append(append([]string{}, bLast...), "Marchetti", "Ashgrove", "Fennimore"), "|") + `)\b`)

func countPIIB(b []byte) int {
	if len(b) < 8 {
		return 0
	}
	return len(piiReB.FindAllIndex(b, -1))
}

// Attack types of organisation B, one per channel; slow-and-low is shared.
const (
	atkBBulk      = "bulk-select"
	atkBCopy      = "copy-stdout"
	atkBSweep     = "keyless-sweep"
	atkBNotice    = "raise-notice"
	atkBException = "raise-exception"
	atkBErrors    = "error-values"
	atkBSetConfig = "set-config"
	atkBNotify    = "listen-notify"
	atkBLO        = "large-object"
	atkBBase64    = "base64"
	atkBBinary    = "binary-array"
	atkBSSN       = "ssn-novelty"
	atkBInference = "inference"
)

var attackTypesB = []string{atkBBulk, atkBCopy, atkBSweep, atkBNotice, atkBException, atkBErrors, atkBSetConfig,
	atkBNotify, atkBLO, atkBBase64, atkBBinary, atkBSSN, atkBInference, atkSlow}

// Offices and their address prefixes; south is renumbered on renumberDay.
const (
	officeNorth   = "127.0.10."
	officeSouth   = "127.0.20."
	officeSouth2  = "127.0.21."
	officeService = "127.0.50."
	dbaHome       = "127.0.60.1"
)

// orgBDays are the days (indexes from 0) of organisation B's events,
// scaled with the length of the run.
type orgBDays struct {
	renumber, shift, incident, monthEnd int
}

func (w *world) bDays() orgBDays {
	d := w.cfg.days
	od := orgBDays{renumber: d * 14 / 30, shift: d * 17 / 30, incident: d * 19 / 30, monthEnd: d - 1}
	for i := range d {
		if w.date(i+1).Day() == 1 {
			od.monthEnd = i
			break
		}
	}
	return od
}

// addr is the client address of employee i on day.
func (w *world) addr(i, day int) string {
	e := &w.employees[i]
	switch e.Office {
	case "south":
		if day >= w.bDays().renumber {
			return fmt.Sprintf("%s%d", officeSouth2, 10+i)
		}
		return fmt.Sprintf("%s%d", officeSouth, 10+i)
	case "service":
		return fmt.Sprintf("%s%d", officeService, 10+i)
	}
	return fmt.Sprintf("%s%d", officeNorth, 10+i)
}

// shiftStart is when employee i's working day starts on day: support team
// north moves from 08:00 to 15:00 UTC on the shift-change day.
func (w *world) shiftStart(i, day int) time.Duration {
	e := &w.employees[i]
	if e.Role == roleSupport && e.Office == "north" && day >= w.bDays().shift {
		return 15 * time.Hour
	}
	if e.Office == "south" {
		return 8*time.Hour + 30*time.Minute
	}
	return 8 * time.Hour
}

// shiftMinute is a random time within employee i's 8.5-hour day.
func (w *world) shiftMinute(rng *rand.Rand, i, day int) time.Time {
	return w.date(day).Add(w.shiftStart(i, day) + time.Duration(rng.IntN(510))*time.Minute)
}

// randPatient is a patient of ordinary work: never a canary.
func (w *world) randPatient(rng *rand.Rand) int {
	for {
		id := 1 + rng.IntN(w.cfg.customers)
		if !w.isCanary(id) {
			return id
		}
	}
}

func (w *world) isCanary(id int) bool {
	for _, c := range canaryIDs(w.cfg.customers) {
		if c == id {
			return true
		}
	}
	return false
}

func (w *world) buildB(cfg config) {
	w.makeEmployeesB(rand.New(rand.NewPCG(cfg.seed, 0xb0e1)))
	for _, d := range []int{cfg.days * 11 / 30, cfg.days * 21 / 30} {
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
	w.makeNormalB(rand.New(rand.NewPCG(cfg.seed, 0xb0a1)))
	w.makeAttacksB(rand.New(rand.NewPCG(cfg.seed, 0xb0a7)))
}

func (w *world) makeEmployeesB(rng *rand.Rand) {
	n := w.cfg.employees
	analysts := max(1, n*15/100)
	devs := max(1, n*20/100)
	dbas := max(1, n*5/100)
	support := n - analysts - devs - dbas - 4
	for i := range support {
		office := "north"
		if i >= support/2 {
			office = "south"
		}
		w.employees = append(w.employees, employee{Name: fmt.Sprintf("helpdesk%02d", i+1), Role: roleSupport, Office: office, Base: 8 + rng.IntN(33)})
	}
	for i := range analysts {
		w.employees = append(w.employees, employee{Name: fmt.Sprintf("analyst%02d", i+1), Role: roleAnalyst, Office: "south"})
	}
	for i := range devs {
		w.employees = append(w.employees, employee{Name: fmt.Sprintf("dev%02d", i+1), Role: roleDeveloper, Office: "north"})
	}
	for i := range dbas {
		w.employees = append(w.employees, employee{Name: fmt.Sprintf("dba%02d", i+1), Role: roleDBA, Office: "north"})
	}
	w.employees = append(w.employees,
		employee{Name: "svc_portal", Role: roleService, Office: "service", Always: true},
		employee{Name: "svc_notify", Role: roleService, Office: "service", Always: true},
		employee{Name: "backup_svc", Role: roleBackup, Office: "service", Always: true},
		employee{Name: "monthend_batch", Role: roleBatch, Office: "service", Always: true})
}

var (
	bAnalystQueries = []string{
		"SELECT status, count(*), sum(amount) FROM orders GROUP BY status ORDER BY status",
		"SELECT item, date_trunc('week', placed_at) AS week, count(*) FROM orders GROUP BY 1, 2 ORDER BY 2 DESC, 1 LIMIT 40",
		"SELECT p.city, count(DISTINCT o.patient_id), sum(o.amount) FROM orders o JOIN patients p ON p.id = o.patient_id GROUP BY p.city ORDER BY 3 DESC",
		"SELECT extract(decade FROM birth_date) AS decade, count(*) FROM patients GROUP BY 1 ORDER BY 1",
		"SELECT card_last4 IS NOT NULL AS has_card, count(*), avg(amount) FROM payments GROUP BY 1",
		"SELECT paid_at, sum(amount) FROM payments WHERE paid_at > date '2026-02-01' GROUP BY 1 ORDER BY 1",
		"SELECT count(*) FILTER (WHERE status = 'cancelled')::float / count(*) AS cancel_rate FROM orders",
	}
	bDevQueries = []string{
		"SELECT id, patient_id, item, amount, status, placed_at FROM orders WHERE id = $1",
		"SELECT id, order_id, amount, paid_at FROM payments WHERE order_id = $1",
		"SELECT status, count(*) FROM orders WHERE placed_at > $1 GROUP BY status",
		"SELECT o.id, o.status, p.amount FROM orders o LEFT JOIN payments p ON p.order_id = o.id WHERE o.id BETWEEN $1 AND $1 + 5",
	}
	bDBAQueries = []string{
		"SELECT pid, usename, application_name, client_addr, state, query_start FROM pg_stat_activity WHERE datname = current_database()",
		"SELECT relname, seq_scan, idx_scan, n_live_tup, n_dead_tup FROM pg_stat_user_tables ORDER BY n_dead_tup DESC",
		"SELECT schemaname, relname, pg_size_pretty(pg_total_relation_size(relid)) FROM pg_statio_user_tables",
		"SELECT wait_event_type, wait_event, count(*) FROM pg_stat_activity GROUP BY 1, 2",
		"SELECT name, setting FROM pg_settings WHERE name LIKE 'autovacuum%'",
	}
)

func (w *world) makeNormalB(rng *rand.Rand) {
	bd := w.bDays()
	devs := []int{}
	for i := range w.employees {
		if w.employees[i].Role == roleDeveloper {
			devs = append(devs, i)
		}
	}
	add := func(i int, at time.Time, s session, stmts ...stmt) {
		w.active[i][w.dayOf(at)] = true
		w.add(event{At: at, Emp: i, Episode: -1, Sess: s, Stmts: stmts})
	}
	for day := range w.cfg.days {
		workday := !w.weekend(day) && !w.holiday(day)
		for i := range w.employees {
			e := &w.employees[i]
			ip := w.addr(i, day)
			switch e.Role {
			case roleSupport:
				if !workday {
					continue
				}
				s := session{App: "helpdesk-web", LocalIP: ip}
				n := int(math.Round(float64(e.Base) * (0.7 + 0.6*rng.Float64())))
				for range n {
					stmts := []stmt{w.supportLookup(rng)}
					if rng.IntN(10) < 3 {
						stmts = append(stmts, stmt{SQL: "SELECT id, item, amount, status, placed_at FROM orders WHERE patient_id = $1 ORDER BY placed_at DESC LIMIT 5",
							Args: []any{w.randPatient(rng)}})
					}
					add(i, w.shiftMinute(rng, i, day), s, stmts...)
				}
			case roleAnalyst:
				if !workday {
					continue
				}
				s := session{Simple: true, App: "DBeaver 24.1.0", LocalIP: ip}
				add(i, w.shiftMinute(rng, i, day), s,
					stmt{SQL: "CREATE TEMP TABLE IF NOT EXISTS daily_revenue AS SELECT placed_at, status, count(*) AS n, sum(amount) AS total FROM orders GROUP BY 1, 2"},
					stmt{SQL: "SELECT * FROM daily_revenue ORDER BY placed_at DESC, status LIMIT 30"})
				for range 4 + rng.IntN(5) {
					add(i, w.shiftMinute(rng, i, day), s, stmt{SQL: bAnalystQueries[rng.IntN(len(bAnalystQueries))]})
				}
				if w.date(day).Weekday() == time.Monday {
					add(i, w.shiftMinute(rng, i, day), s, stmt{SQL: fmt.Sprintf(
						"SELECT full_name, email, city, birth_date FROM patients WHERE id %% 97 = %d LIMIT 40", rng.IntN(97))})
				}
			case roleDeveloper:
				if !workday {
					continue
				}
				s := session{App: "IntelliJ IDEA", LocalIP: ip}
				for range 5 + rng.IntN(11) {
					q := bDevQueries[rng.IntN(len(bDevQueries))]
					var arg any = 1 + rng.IntN(2*w.cfg.customers-10)
					if strings.Contains(q, "placed_at > $1") {
						arg = w.date(day).AddDate(0, 0, -7)
					}
					add(i, w.shiftMinute(rng, i, day), s, stmt{SQL: q, Args: []any{arg}})
				}
				if rng.IntN(100) < 15 {
					add(i, w.shiftMinute(rng, i, day), s, stmt{SQL: "SELECT id, full_name, email FROM patients WHERE id = $1", Args: []any{w.randPatient(rng)}})
				}
				// Deploy day: one developer in turn, after hours, from the
				// deploy tool.
				if week := day / 7; w.date(day).Weekday() == time.Wednesday && devs[week%len(devs)] == i {
					v := 100 + week
					add(i, w.date(day).Add(18*time.Hour+time.Duration(rng.IntN(20))*time.Minute), session{Key: "deploy", Simple: true, App: "deploy-tool", LocalIP: ip},
						stmt{SQL: "CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"},
						stmt{SQL: fmt.Sprintf("INSERT INTO schema_migrations (version) VALUES (%d) ON CONFLICT DO NOTHING", v)},
						stmt{SQL: fmt.Sprintf("ALTER TABLE orders ADD COLUMN IF NOT EXISTS note_v%d text", v)},
						stmt{SQL: fmt.Sprintf("CREATE INDEX IF NOT EXISTS orders_status_v%d ON orders (status)", v)},
						stmt{SQL: "SELECT id, full_name, email, phone FROM patients WHERE id IN (1, 2, 3, 4, 5)"})
				}
			case roleDBA:
				if day == bd.incident && i == w.firstOf(roleDBA) {
					s := session{Key: "incident", Simple: true, App: "psql", LocalIP: dbaHome}
					t := w.date(day).Add(2*time.Hour + 30*time.Minute)
					ids := make([]string, 20)
					for k := range ids {
						ids[k] = fmt.Sprint(w.randPatient(rng))
					}
					add(i, t, s, stmt{SQL: bDBAQueries[0]}, stmt{SQL: "SELECT locktype, relation::regclass, mode, granted FROM pg_locks WHERE NOT granted"})
					add(i, t.Add(15*time.Minute), s, stmt{SQL: "SELECT * FROM patients WHERE id IN (" + strings.Join(ids, ", ") + ")"})
					add(i, t.Add(40*time.Minute), s, stmt{SQL: "REINDEX TABLE patients"})
					add(i, t.Add(70*time.Minute), s, stmt{SQL: "VACUUM (ANALYZE) patients"}, stmt{SQL: bDBAQueries[1]})
				}
				if !workday {
					continue
				}
				s := session{Simple: true, App: "psql", LocalIP: ip}
				for range 2 + rng.IntN(4) {
					add(i, w.shiftMinute(rng, i, day), s, stmt{SQL: bDBAQueries[rng.IntN(len(bDBAQueries))]})
				}
				add(i, w.date(day).Add(13*time.Hour+time.Duration(rng.IntN(60))*time.Minute), s, stmt{SQL: "VACUUM (ANALYZE) orders"})
			case roleService:
				s := session{App: "patient-portal", LocalIP: ip}
				if e.Name == "svc_notify" {
					add(i, w.date(day).Add(7*time.Hour), session{App: "notify-worker", LocalIP: ip},
						stmt{SQL: "SELECT p.id, p.full_name, p.email, p.phone FROM patients p JOIN orders o ON o.patient_id = p.id WHERE o.placed_at = $1",
							Args: []any{w.date(day).AddDate(0, 0, -1)}})
					continue
				}
				for h := range 24 {
					var stmts []stmt
					for range 10 + rng.IntN(21) {
						id := w.randPatient(rng)
						stmts = append(stmts, stmt{SQL: "SELECT id, full_name, email, phone, address FROM patients WHERE id = $1", Args: []any{id}})
						if rng.IntN(2) == 0 {
							stmts = append(stmts, stmt{SQL: "SELECT id, item, status FROM orders WHERE patient_id = $1", Args: []any{id}})
						}
					}
					add(i, w.date(day).Add(time.Duration(h)*time.Hour+time.Duration(rng.IntN(60))*time.Minute), s, stmts...)
				}
			case roleBackup:
				s := session{Simple: true, App: "pg_dump", LocalIP: ip}
				add(i, w.date(day).Add(time.Hour+30*time.Minute), s,
					stmt{SQL: "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1"},
					stmt{SQL: "COPY public.patients (id, full_name, email, phone, ssn, address, city, birth_date, signup_date) TO STDOUT", Copy: true},
					stmt{SQL: "COPY public.orders TO STDOUT", Copy: true},
					stmt{SQL: "COPY public.payments (id, order_id, amount, card_last4, paid_at) TO STDOUT", Copy: true})
			case roleBatch:
				if day != bd.monthEnd {
					continue
				}
				add(i, w.date(day).Add(22*time.Hour), session{App: "monthend-invoicing", LocalIP: ip},
					stmt{SQL: "SELECT p.id, p.full_name, p.email, p.address, coalesce(sum(o.amount), 0) AS total FROM patients p LEFT JOIN orders o ON o.patient_id = p.id GROUP BY p.id ORDER BY p.id"},
					stmt{SQL: "UPDATE orders SET status = 'invoiced' WHERE status = 'delivered'"})
			}
		}
	}
}

func (w *world) firstOf(role string) int {
	for i := range w.employees {
		if w.employees[i].Role == role {
			return i
		}
	}
	return -1
}

// supportLookup is one lookup of a support agent: a patient by id or by
// email, now and then a surname search in a city.
func (w *world) supportLookup(rng *rand.Rand) stmt {
	id := w.randPatient(rng)
	switch r := rng.IntN(100); {
	case r < 70:
		return stmt{SQL: "SELECT id, full_name, email, phone, address, city FROM patients WHERE id = $1", Args: []any{id}}
	case r < 95:
		return stmt{SQL: "SELECT id, full_name, email, phone, birth_date FROM patients WHERE email = $1", Args: []any{patientEmail(id)}}
	default:
		return stmt{SQL: "SELECT id, full_name, email, city FROM patients WHERE full_name LIKE $1 AND city = $2 ORDER BY id LIMIT 10",
			Args: []any{"% " + patientLast(id), bCities[rng.IntN(len(bCities))]}}
	}
}

// makeAttacksB injects organisation B's episodes, each by a support agent
// on a working day, in their shift.
func (w *world) makeAttacksB(rng *rand.Rand) {
	var agents []int
	for i := range w.employees {
		if w.employees[i].Role == roleSupport {
			agents = append(agents, i)
		}
	}
	used := map[int]int{}
	pick := func() int {
		best := -1
		for _, i := range agents {
			if best < 0 || used[i] < used[best] || used[i] == used[best] && rng.IntN(2) == 0 {
				best = i
			}
		}
		used[best]++
		return best
	}
	workday := func(d int) bool { return !w.weekend(d) && !w.holiday(d) }
	for _, typ := range w.cfg.attacks {
		if typ == atkSlow {
			startDay := min(w.cfg.slowFrom-1, w.cfg.days-1)
			if w.cfg.days < 14 {
				startDay = min(1, w.cfg.days-1)
			}
			for range max(1, w.cfg.episodes/3) {
				for _, f := range []float64{0.25, 0.5} {
					w.makeSlowB(rng, pick(), startDay, f)
				}
			}
			continue
		}
		for range w.cfg.episodes {
			day := 0
			for try := 0; try < 100; try++ {
				day = rng.IntN(w.cfg.days)
				if (w.cfg.days <= 2 || day > 0) && workday(day) {
					break
				}
			}
			w.makeEpisodeB(rng, typ, pick(), day)
		}
	}
}

func (w *world) makeEpisodeB(rng *rand.Rand, typ string, emp, day int) {
	ip := w.addr(emp, day)
	start := w.date(day).Add(w.shiftStart(emp, day) + time.Hour + time.Duration(rng.IntN(5*60))*time.Minute)
	psql := session{Key: "attack", Simple: true, App: "psql", LocalIP: ip}
	app := session{Key: "attack-app", App: "helpdesk-web", LocalIP: ip}
	normal := session{App: "helpdesk-web", LocalIP: ip}
	base := 1 + rng.IntN(w.cfg.customers-2001)
	var evs []event
	at := func(d time.Duration, s session, stmts ...stmt) {
		evs = append(evs, event{At: start.Add(d), Emp: emp, Sess: s, Stmts: stmts})
	}
	rng10 := func(sql string, n int, s session, fails bool) {
		for m := range n / 10 {
			var stmts []stmt
			for range 10 {
				stmts = append(stmts, stmt{SQL: sql, Args: []any{w.randPatient(rng)}, Fails: fails})
			}
			at(time.Duration(m)*time.Minute, s, stmts...)
		}
	}
	switch typ {
	case atkBBulk:
		at(0, psql, stmt{SQL: "SELECT full_name, email, phone, ssn, address FROM patients"})
	case atkBCopy:
		at(0, psql, stmt{SQL: "COPY (SELECT full_name, email, phone, ssn, address FROM patients) TO STDOUT", Copy: true})
	case atkBSweep:
		for k := range 60 {
			at(time.Duration(k)*30*time.Second, app, stmt{SQL: "SELECT full_name, email, phone FROM patients WHERE id BETWEEN $1 AND $1 + 19", Args: []any{base + 20*k}})
		}
	case atkBNotice:
		at(0, psql, stmt{SQL: fmt.Sprintf(`DO $$DECLARE r record; BEGIN
  FOR r IN SELECT full_name, email, phone FROM patients WHERE id BETWEEN %d AND %d ORDER BY id LOOP
    RAISE NOTICE '%%|%%|%%', r.full_name, r.email, r.phone;
  END LOOP;
END$$`, base, base+1999)})
	case atkBException:
		at(0, psql, stmt{SQL: fmt.Sprintf("DO $$BEGIN RAISE EXCEPTION '%%', (SELECT string_agg(email, ',') FROM patients WHERE id BETWEEN %d AND %d); END$$", base, base+1999), Fails: true})
	case atkBErrors:
		rng10("SELECT email::int FROM patients WHERE id = $1", 300, app, true)
	case atkBSetConfig:
		rng10("SELECT length(set_config('application_name', (SELECT email FROM patients WHERE id = $1), false))", 300, app, false)
	case atkBNotify:
		ch := fmt.Sprintf("exfil_%d", len(w.episodes)+1)
		at(0, psql, stmt{SQL: "LISTEN " + ch},
			stmt{SQL: fmt.Sprintf("SELECT count(pg_notify('%s', full_name || '|' || email || '|' || phone)) FROM patients WHERE id BETWEEN %d AND %d", ch, base, base+999)})
	case atkBLO:
		oid := 424200 + len(w.episodes)
		at(0, psql, stmt{SQL: fmt.Sprintf("SELECT lo_from_bytea(%d, convert_to((SELECT string_agg(full_name || ',' || email || ',' || phone, E'\\n') FROM patients WHERE id BETWEEN %d AND %d), 'UTF8'))", oid, base, base+1999)})
		at(time.Minute, psql, stmt{SQL: fmt.Sprintf("SELECT lo_get(%d)", oid)}, stmt{SQL: fmt.Sprintf("SELECT lo_unlink(%d)", oid)})
	case atkBBase64:
		// In five reads of 200, each under any planner limit a policy
		// would set for lists of patients.
		for k := range 5 {
			from := base + 200*k
			at(time.Duration(k)*time.Minute, psql, stmt{SQL: fmt.Sprintf("SELECT encode(convert_to(full_name || '|' || email || '|' || phone, 'UTF8'), 'base64') AS blob FROM patients WHERE id BETWEEN %d AND %d", from, from+199)})
		}
	case atkBBinary:
		at(0, app, stmt{SQL: fmt.Sprintf("SELECT array_agg(full_name || ' <' || email || '>') FROM patients WHERE id BETWEEN %d AND %d", base, base+999), Binary: true})
	case atkBSSN:
		for k := range 50 {
			at(time.Duration(k)*6*time.Minute, normal, stmt{SQL: "SELECT id, full_name, ssn FROM patients WHERE id = $1", Args: []any{w.randPatient(rng)}})
		}
	case atkBInference:
		k := 0
		for range 5 {
			id := w.randPatient(rng)
			lo, hi, target := 0, 1000000000, ssnNumber(id)
			for p := range 30 {
				mid := (lo + hi) / 2
				st := stmt{SQL: "SELECT count(*) FROM patients WHERE id = $1 AND ssn < $2", Args: []any{id, formatSSN(mid)}}
				if target < mid {
					hi = mid
				} else {
					lo = mid
				}
				if p == 29 {
					st.Infers = 1
				}
				at(time.Duration(k)*20*time.Second, app, st)
				k++
			}
		}
	}
	end := evs[len(evs)-1].At.Add(time.Minute)
	ep := w.newEpisode(typ, emp, start, end)
	for _, e := range evs {
		e.Episode = ep
		if e.Sess.Key != "" {
			e.Sess.Key = fmt.Sprintf("%s-%d", e.Sess.Key, ep+1)
		}
		w.add(e)
	}
}

// makeSlowB adds a slow-and-low episode: from startDay to the end of the
// run, every working day, extra single lookups amounting to factor times
// the agent's own normal daily volume, in their shift, on their session.
func (w *world) makeSlowB(rng *rand.Rand, emp, startDay int, factor float64) {
	e := &w.employees[emp]
	ep := w.newEpisode(atkSlow, emp, w.date(startDay), w.date(w.cfg.days))
	w.episodes[ep].Factor = factor
	for day := startDay; day < w.cfg.days; day++ {
		if w.weekend(day) || w.holiday(day) {
			continue
		}
		for range int(math.Round(factor * float64(e.Base))) {
			w.add(event{At: w.shiftMinute(rng, emp, day), Emp: emp, Episode: ep, Sess: session{App: "helpdesk-web", LocalIP: w.addr(emp, day)},
				Stmts: []stmt{{SQL: "SELECT id, full_name, email, phone, address, city FROM patients WHERE id = $1", Args: []any{w.randPatient(rng)}}}})
		}
	}
}

// binaryArrayText returns the elements of a one-dimensional array in
// PostgreSQL's binary format, a line each, as a client decodes them.
func binaryArrayText(b []byte) ([]byte, bool) {
	if len(b) < 12 || binary.BigEndian.Uint32(b) != 1 {
		return nil, false
	}
	p := 12 + 8
	var out []byte
	for p+4 <= len(b) {
		n := int(int32(binary.BigEndian.Uint32(b[p:])))
		p += 4
		if n < 0 {
			continue
		}
		if p+n > len(b) {
			return nil, false
		}
		out = append(append(out, b[p:p+n]...), '\n')
		p += n
	}
	return out, true
}

// clientDecode decodes a text-format value the way a client would when it
// is a hex bytea (\x...) or base64 text (encode(..., 'base64'), lines of 76
// characters): the simulator counts what the client can read.
func clientDecode(b []byte) ([]byte, bool) {
	if len(b) > 2 && b[0] == '\\' && b[1] == 'x' {
		d, err := hex.DecodeString(string(b[2:]))
		return d, err == nil
	}
	if len(b) < 8 {
		return nil, false
	}
	s := strings.ReplaceAll(string(b), "\n", "")
	if len(s)%4 != 0 {
		return nil, false
	}
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '+' || r == '/' || r == '=') {
			return nil, false
		}
	}
	d, err := base64.StdEncoding.DecodeString(s)
	return d, err == nil
}
