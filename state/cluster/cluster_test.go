package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgwarden/pgwarden/state/schema"
	"github.com/pgwarden/pgwarden/test/pgtest"
	"github.com/pgwarden/pgwarden/test/proxytest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func leasePool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	db := pgtest.Shared(t)
	db.Exec(t, "DROP TABLE IF EXISTS pgwarden_leases")
	pool := db.Pool(t, pgtest.SuperUser)
	if err := schema.Create(t.Context(), pool, schema.For("pgwarden_leases"), "pgwarden_leases"); err != nil {
		t.Fatal(err)
	}
	return pool
}

// TestLease: one holder at a time; a release or an expiry lets another
// take it; leases of other names are apart.
func TestLease(t *testing.T) {
	pool := leasePool(t)
	ctx := t.Context()
	const ttl = time.Second
	a, b := NewLease(pool, "work", "a", ttl), NewLease(pool, "work", "b", ttl)
	claim := func(l *Lease) bool {
		t.Helper()
		held, err := l.Claim(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if held != l.Held() {
			t.Fatalf("Claim says %v, Held %v", held, l.Held())
		}
		return held
	}
	if !claim(a) || claim(b) || !claim(a) {
		t.Fatal("a takes the lease and renews it; b must not take it")
	}
	if other := NewLease(pool, "other", "b", ttl); !claim(other) {
		t.Fatal("a lease of another name is held by someone")
	}
	if err := a.Release(ctx); err != nil || a.Held() {
		t.Fatalf("release: %v, held %v", err, a.Held())
	}
	if !claim(b) || claim(a) {
		t.Fatal("after a released, b takes the lease, and a does not")
	}
	// b stops renewing: a takes it once it expired.
	proxytest.Eventually(t, 5*time.Second, "a takes the expired lease", func() (bool, string) { return claim(a), "b holds it" })
	if claim(b) {
		t.Fatal("b took back the lease a holds")
	}
}

// TestExchanger: an exchange flushes, pulls and claims the lease, in
// order, and stops at the first failure; health and its log follow.
func TestExchanger(t *testing.T) {
	var steps []string
	var failPull atomic.Bool
	var logs bytes.Buffer
	e, err := NewExchanger(ExchangerConfig{Name: "test", Unavailable: "consequence",
		Flush: func(context.Context) error { steps = append(steps, "flush"); return nil },
		Pull: func(context.Context) error {
			steps = append(steps, "pull")
			if failPull.Load() {
				return errors.New("down")
			}
			return nil
		},
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	e.Exchange(t.Context())
	if !e.Healthy() || strings.Join(steps, ",") != "flush,pull" {
		t.Fatalf("healthy %v, steps %v", e.Healthy(), steps)
	}
	failPull.Store(true)
	e.Exchange(t.Context())
	e.Exchange(t.Context())
	if e.Healthy() || strings.Count(logs.String(), "test_unavailable") != 1 || !strings.Contains(logs.String(), "consequence") {
		t.Fatalf("healthy %v after failures; log:\n%s", e.Healthy(), logs.String())
	}
	failPull.Store(false)
	e.Exchange(t.Context())
	if !e.Healthy() || !strings.Contains(logs.String(), "test_restored") {
		t.Fatalf("healthy %v after recovery; log:\n%s", e.Healthy(), logs.String())
	}
	if _, err := NewExchanger(ExchangerConfig{Name: "x"}); err == nil {
		t.Error("an Exchanger without Flush and Pull")
	}
}

// TestExchangerRun: Run exchanges at once, then every Interval, and at
// the end flushes once more and releases the lease it holds.
func TestExchangerRun(t *testing.T) {
	pool := leasePool(t)
	var flushes, pulls atomic.Int32
	lease := NewLease(pool, "run", "a", time.Minute)
	e, err := NewExchanger(ExchangerConfig{Name: "test", Interval: 10 * time.Millisecond, Lease: lease,
		Flush: func(context.Context) error { flushes.Add(1); return nil },
		Pull:  func(context.Context) error { pulls.Add(1); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	proxytest.Eventually(t, 5*time.Second, "Run exchanges and takes the lease", func() (bool, string) {
		return pulls.Load() >= 3 && lease.Held(), fmt.Sprintf("%d pulls, lease held %v", pulls.Load(), lease.Held())
	})
	cancel()
	<-done
	if flushes.Load() != pulls.Load()+1 {
		t.Errorf("%d flushes, %d pulls: want one flush more at the end", flushes.Load(), pulls.Load())
	}
	if lease.Held() {
		t.Error("the lease is held after Run")
	}
	if other := NewLease(pool, "run", "b", time.Minute); !must(other.Claim(t.Context())) {
		t.Error("another instance cannot take the lease Run released")
	}
}

func must(held bool, err error) bool {
	if err != nil {
		panic(err)
	}
	return held
}
