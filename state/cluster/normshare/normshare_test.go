package normshare

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgwarden/pgwarden/policy/norm"
	"github.com/pgwarden/pgwarden/test/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var day0 = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC) // a Monday

func newModel(t *testing.T) *norm.Model {
	t.Helper()
	m, err := norm.New(norm.Config{Location: time.UTC, LearningDays: 3, MinActiveDays: 3})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// fresh empties the tables and returns a pool on the shared cluster.
func fresh(t *testing.T) *pgxpool.Pool {
	t.Helper()
	db := pgtest.Shared(t)
	db.Exec(t, "DROP TABLE IF EXISTS pgwarden_norm_observations, pgwarden_leases")
	pool := db.Pool(t, pgtest.SuperUser)
	return pool
}

func newSharer(t *testing.T, pool *pgxpool.Pool, instance string, m *norm.Model, onRemote func([]norm.Anomaly)) *Sharer {
	t.Helper()
	s, err := New(context.Background(), Config{Pool: pool, Instance: instance, Model: m, OnRemote: onRemote, Lease: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func lookup(at time.Time, emails int64, session string) norm.Observation {
	return norm.Observation{Employee: "alice", Peer: "support", Time: at, ClientAddr: "10.0.0.5", Application: "console",
		SessionID: session, Features: norm.Features{PIIValues: map[string]int64{"email": emails}, PIIRows: emails,
			Subjects: emails, Rows: emails, Bytes: 40 * emails, Statements: 1, Tables: []string{"public.customers"}}}
}

// openState is the part of a model's snapshot that counts what it was fed:
// the open buckets and the closed days of every employee.
func openState(t *testing.T, m *norm.Model) string {
	t.Helper()
	var buf bytes.Buffer
	if err := m.Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	var s struct {
		Employees []struct {
			Name string          `json:"name"`
			Open json.RawMessage `json:"open"`
			Days json.RawMessage `json:"days"`
		} `json:"employees"`
	}
	if err := json.Unmarshal(buf.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(s.Employees)
	return string(b)
}

// TestSplitAcrossInstancesLearnsOneNorm: an employee whose statements go
// through two instances is learned, on each, exactly as one model fed
// everything learns them; and a burst split across the instances is an
// anomaly on the instance that receives its second half, which alone
// would not see one.
func TestSplitAcrossInstancesLearnsOneNorm(t *testing.T) {
	pool := fresh(t)
	ctx := context.Background()
	ma, mb, ref := newModel(t), newModel(t), newModel(t)
	var remoteB []norm.Anomaly
	a := newSharer(t, pool, "a", ma, nil)
	b := newSharer(t, pool, "b", mb, func(an []norm.Anomaly) { remoteB = append(remoteB, an...) })

	// Five working days of 40 lookups, alternating between instances,
	// exchanged every hour of the day.
	for d := range 5 {
		for h := 9; h < 17; h++ {
			for k := range 5 {
				o := lookup(day0.AddDate(0, 0, d).Add(time.Duration(h)*time.Hour+time.Duration(k)*7*time.Minute), 2, "s1")
				ref.Observe(o)
				if k%2 == 0 {
					a.Observe(o)
				} else {
					b.Observe(o)
				}
				// As Run does, every half second: long before the
				// next statement.
				a.Exchange(ctx)
				b.Exchange(ctx)
			}
		}
	}
	end := day0.AddDate(0, 0, 5)
	for _, m := range []*norm.Model{ma, mb, ref} {
		m.Advance(end)
	}
	want := openState(t, ref)
	if got := openState(t, ma); got != want {
		t.Errorf("instance a learned\n%s\nwant (one model fed everything)\n%s", got, want)
	}
	if got := openState(t, mb); got != want {
		t.Errorf("instance b learned\n%s\nwant\n%s", got, want)
	}
	if na, nr := ma.Norm("alice", end), ref.Norm("alice", end); na.ActiveDays != 5 || na.Features["pii_values/1d"] != nr.Features["pii_values/1d"] {
		t.Errorf("a's norm %+v, want %+v", na.Features["pii_values/1d"], nr.Features["pii_values/1d"])
	}

	// Day 6, 10:00: 15 rows through each instance, in the same exchange
	// interval. Each half is under the norm's threshold for ten minutes;
	// the sum is over it. Neither instance sees it as it observes; both
	// do when they read the other's rows, and hand it on (OnRemote).
	remoteA := []norm.Anomaly{}
	a.cfg.OnRemote = func(an []norm.Anomaly) { remoteA = append(remoteA, an...) }
	t6 := end.Add(10 * time.Hour)
	var local []norm.Anomaly
	for k := range 15 {
		local = append(local, a.Observe(lookup(t6.Add(time.Duration(k)*10*time.Second), 1, "s2"))...)
		local = append(local, b.Observe(lookup(t6.Add(time.Duration(k)*10*time.Second+time.Second), 1, "s3"))...)
	}
	if len(local) != 0 {
		t.Fatalf("each half alone showed %+v; want the halves under the threshold (raise the split)", local)
	}
	remoteB = nil
	a.Exchange(ctx)
	b.Exchange(ctx)
	a.Exchange(ctx)
	for name, got := range map[string][]norm.Anomaly{"a": remoteA, "b": remoteB} {
		var most float64
		for _, an := range got {
			if an.Kind == "volume" && an.Window == "10m" {
				most = max(most, an.Observed)
			}
		}
		if most <= 15 {
			t.Errorf("%s was handed %+v; want a 10-minute volume over either half's 15 rows", name, got)
		}
	}

	// 11:00: a burst through a alone. a reports it as it observes; b,
	// reading a's rows, is not handed it again.
	remoteB = nil
	var fromA []norm.Anomaly
	for k := range 15 {
		fromA = append(fromA, a.Observe(lookup(t6.Add(time.Hour+time.Duration(k)*10*time.Second), 10, "s4"))...)
	}
	a.Exchange(ctx)
	b.Exchange(ctx)
	if len(fromA) == 0 {
		t.Fatal("a burst of 150 values through a alone: no anomaly on a")
	}
	for _, an := range remoteB {
		for _, own := range fromA {
			if anomalyKey(an) == anomalyKey(own) {
				t.Errorf("b was handed %s again, which a reported itself", anomalyKey(an))
			}
		}
	}
}

// TestSnapshotRestoreCountsOnce: an instance restored from a snapshot
// catches up from the table, its own later rows included, and counts
// nothing twice.
func TestSnapshotRestoreCountsOnce(t *testing.T) {
	pool := fresh(t)
	ctx := context.Background()
	ma, mb := newModel(t), newModel(t)
	a := newSharer(t, pool, "a", ma, nil)
	b := newSharer(t, pool, "b", mb, nil)
	at := day0.Add(10 * time.Hour)
	step := func(s *Sharer, n int) {
		for range n {
			at = at.Add(3 * time.Second)
			s.Observe(lookup(at, 1, "s"))
		}
	}
	step(a, 20)
	step(b, 20)
	a.Exchange(ctx)
	b.Exchange(ctx)
	a.Exchange(ctx)
	step(a, 7) // queued, not yet written: in the snapshot
	var snap bytes.Buffer
	if err := a.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	step(a, 11) // after the snapshot: written, then a "crashes"
	step(b, 13)
	a.Exchange(ctx)
	b.Exchange(ctx)
	a.Exchange(ctx)
	want := openState(t, ma)

	m2 := newModel(t)
	a2 := newSharer(t, pool, "a", m2, nil)
	if err := a2.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	a2.Exchange(ctx)
	if got := openState(t, m2); got != want {
		t.Errorf("restored instance holds\n%s\nwant\n%s", got, want)
	}
	// New observations of the restarted instance are numbered after
	// its old rows, and reach b.
	step(a2, 5)
	a2.Exchange(ctx)
	b.Exchange(ctx)
	if got, want := openState(t, mb), openState(t, m2); got != want {
		t.Errorf("b holds\n%s\nwant\n%s", got, want)
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(DISTINCT seq) FROM pgwarden_norm_observations WHERE instance = 'a'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 20+7+11+5 {
		t.Errorf("instance a wrote %d rows, want %d (one per statement second, none twice)", n, 20+7+11+5)
	}
}

// TestLeaseOneReporter: one instance at a time reports; when it stops, the
// other takes over; without the database, each reports for itself.
func TestLeaseOneReporter(t *testing.T) {
	pool := fresh(t)
	ctx := context.Background()
	a := newSharer(t, pool, "a", newModel(t), nil)
	b := newSharer(t, pool, "b", newModel(t), nil)
	a.Exchange(ctx)
	b.Exchange(ctx)
	if !a.Leader() || b.Leader() {
		t.Fatalf("leaders: a %v, b %v; want a only", a.Leader(), b.Leader())
	}
	if err := a.lease.Release(ctx); err != nil {
		t.Fatal(err)
	}
	b.Exchange(ctx)
	a.Exchange(ctx)
	if a.Leader() || !b.Leader() {
		t.Fatalf("after a released: a %v, b %v; want b only", a.Leader(), b.Leader())
	}
	// b stops renewing: a takes over once the lease expired.
	deadline := time.Now().Add(5 * time.Second)
	for !a.Leader() && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		a.Exchange(ctx)
	}
	if !a.Leader() {
		t.Fatal("a never took over the expired lease")
	}

	// The database unreachable: every instance reports.
	db := pgtest.Shared(t)
	dead, err := pgxpool.New(ctx, db.DSN(pgtest.SuperUser))
	if err != nil {
		t.Fatal(err)
	}
	c := newSharer(t, dead, "c", newModel(t), nil)
	dead.Close()
	c.Observe(lookup(day0.Add(10*time.Hour), 1, "s"))
	c.Exchange(ctx)
	if c.Healthy() || !c.Leader() {
		t.Errorf("without the database: healthy %v, leader %v; want false, true", c.Healthy(), c.Leader())
	}
	c.mu.Lock()
	queued := len(c.sealed)
	c.mu.Unlock()
	if queued != 1 {
		t.Errorf("%d observations kept for later, want 1", queued)
	}
}

func TestMerge(t *testing.T) {
	a := lookup(day0, 2, "s")
	b := lookup(day0.Add(500*time.Millisecond), 3, "s")
	b.Tables = []string{"public.customers", "public.orders"}
	b.Failed, a.UnexplainedStatements, b.UnexplainedStatements = 1, 1, 2
	merge(&a, &b)
	if a.PIIValues["email"] != 5 || a.Statements != 2 || a.Failed != 1 || a.UnexplainedStatements != 3 || !a.Time.Equal(b.Time) ||
		!slices.Equal(a.Tables, []string{"public.customers", "public.orders"}) {
		t.Errorf("merged %+v", a)
	}
}

// TestModelOnly: a shared snapshot restores into a model that does not
// share, and a model's own snapshot passes through.
func TestModelOnly(t *testing.T) {
	pool := fresh(t)
	m := newModel(t)
	s := newSharer(t, pool, "a", m, nil)
	s.Observe(lookup(day0.Add(10*time.Hour), 3, "s"))
	var env, plain bytes.Buffer
	if err := s.Snapshot(&env); err != nil {
		t.Fatal(err)
	}
	if err := m.Snapshot(&plain); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"shared": env.Bytes(), "plain": plain.Bytes()} {
		m2 := newModel(t)
		if err := m2.Restore(bytes.NewReader(ModelOnly(b))); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got, want := openState(t, m2), openState(t, m); got != want {
			t.Errorf("%s: restored %s, want %s", name, got, want)
		}
	}
}

// BenchmarkObserve compares a statement's cost in the model alone and
// through the Sharer, which also queues it (merged per employee, session
// and second) for the other instances.
func BenchmarkObserve(b *testing.B) {
	emps := []string{"alice", "bob", "carol", "dave"}
	obs := func(i int) norm.Observation {
		o := lookup(day0.Add(10*time.Hour+time.Duration(i)*time.Millisecond), 3, "s")
		o.Employee = emps[i%len(emps)]
		return o
	}
	b.Run("model", func(b *testing.B) {
		m, _ := norm.New(norm.Config{Location: time.UTC})
		for i := 0; b.Loop(); i++ {
			m.Observe(obs(i))
		}
	})
	b.Run("sharer", func(b *testing.B) {
		m, _ := norm.New(norm.Config{Location: time.UTC})
		s := &Sharer{cfg: Config{Model: m, Logger: slog.Default()}, pending: make(map[mergeKey]*shared), applied: map[string]int64{}}
		for i := 0; b.Loop(); i++ {
			s.Observe(obs(i))
			if i%1000 == 999 { // what Run's flush takes every half second
				s.mu.Lock()
				s.sealLocked()
				s.sealed = s.sealed[:0]
				s.mu.Unlock()
			}
		}
	})
}

// TestPruneKeepsEachInstancesLastRow: pruning leaves each instance's last
// row, so an instance that starts again numbers after it, and the others,
// which remember where they are in its numbering, still read its rows.
func TestPruneKeepsEachInstancesLastRow(t *testing.T) {
	pool := fresh(t)
	ctx := context.Background()
	ma, mb := newModel(t), newModel(t)
	a := newSharer(t, pool, "a", ma, nil)
	b := newSharer(t, pool, "b", mb, nil)
	at := day0.Add(10 * time.Hour)
	for i := range 3 {
		a.Observe(lookup(at.Add(time.Duration(i)*time.Second), 1, "s"))
	}
	a.Exchange(ctx)
	b.Exchange(ctx)
	if err := a.Prune(ctx); err != nil { // every row is older than the retention
		t.Fatal(err)
	}
	var n, last int64
	if err := pool.QueryRow(ctx, "SELECT count(*), max(seq) FROM pgwarden_norm_observations WHERE instance = 'a'").Scan(&n, &last); err != nil || n != 1 || last != 3 {
		t.Fatalf("after pruning: %d rows, last %d, %v; want the last (3)", n, last, err)
	}
	m2 := newModel(t)
	a2 := newSharer(t, pool, "a", m2, nil)
	a2.Observe(lookup(at.Add(time.Minute), 5, "s2"))
	a2.Exchange(ctx)
	before := openState(t, mb)
	b.Exchange(ctx)
	if openState(t, mb) == before {
		t.Error("b did not read the restarted instance's new row")
	}
}

// TestRestoreModelOnlyFeedsNothingAgain: a model saved without a
// watermark (by an instance that did not share) is taken to hold what the
// table holds: nothing already there is fed to it again.
func TestRestoreModelOnlyFeedsNothingAgain(t *testing.T) {
	pool := fresh(t)
	ctx := context.Background()
	ma := newModel(t)
	a := newSharer(t, pool, "a", ma, nil)
	a.Observe(lookup(day0.Add(10*time.Hour), 3, "s"))
	a.Exchange(ctx)
	var plain bytes.Buffer
	if err := ma.Snapshot(&plain); err != nil {
		t.Fatal(err)
	}
	m2 := newModel(t)
	c := newSharer(t, pool, "c", m2, nil)
	if err := c.Restore(bytes.NewReader(plain.Bytes())); err != nil {
		t.Fatal(err)
	}
	c.Exchange(ctx)
	if got, want := openState(t, m2), openState(t, ma); got != want {
		t.Errorf("after a pull: %s, want %s (nothing fed twice)", got, want)
	}
}

// TestFlushAfterALostReply: rows a COPY committed although its reply was
// lost (so they are still queued) are not written twice: the failed
// attempt drops them, and the next writes the rest.
func TestFlushAfterALostReply(t *testing.T) {
	pool := fresh(t)
	ctx := context.Background()
	a := newSharer(t, pool, "a", newModel(t), nil)
	mb := newModel(t)
	b := newSharer(t, pool, "b", mb, nil)
	at := day0.Add(10 * time.Hour)
	for i := range 3 {
		a.Observe(lookup(at.Add(time.Duration(i)*time.Second), 1, "s"))
	}
	a.mu.Lock()
	a.sealLocked()
	written := slices.Clone(a.sealed)
	a.mu.Unlock()
	if err := a.flush(ctx); err != nil {
		t.Fatal(err)
	}
	// As if the reply had been lost: the rows are queued again, after
	// them one more.
	a.Observe(lookup(at.Add(time.Minute), 1, "s"))
	a.mu.Lock()
	a.sealLocked()
	a.sealed = append(written, a.sealed...)
	a.mu.Unlock()
	if err := a.flush(ctx); err == nil {
		t.Fatal("writing rows the table holds succeeded")
	}
	if err := a.flush(ctx); err != nil {
		t.Fatalf("the attempt after: %v", err)
	}
	var n, last int64
	if err := pool.QueryRow(ctx, "SELECT count(*), max(seq) FROM pgwarden_norm_observations WHERE instance = 'a'").Scan(&n, &last); err != nil || n != 4 || last != 4 {
		t.Errorf("%d rows, last %d, %v; want 4 rows once", n, last, err)
	}
	b.Exchange(ctx)
	if got := openState(t, mb); !strings.Contains(got, `"open":[[4,`) {
		t.Errorf("b holds %s; want the 4 observations", got)
	}
}
