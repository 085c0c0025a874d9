package audit

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"runtime"
	"testing"
)

// BenchmarkAppend measures Append from 8 goroutines (at least; a multiple
// of GOMAXPROCS) under each sync policy
// on the file system of the test's temporary directory. Report events/s and
// the events that shared one fsync.
func BenchmarkAppend(b *testing.B) {
	data := json.RawMessage(`{"fingerprint":"a1b2c3d4e5f6","sql":"select email, name from customers where id = $1","rows":1,"pii_values":{"email":1,"name":1},"bytes":180,"duration_us":420}`)
	for _, policy := range []SyncPolicy{SyncNever, SyncInterval, SyncAlways} {
		b.Run(policy.String(), func(b *testing.B) {
			l, err := Open(Config{
				Dir:    b.TempDir(),
				Key:    testKey,
				Sync:   policy,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			if err != nil {
				b.Fatal(err)
			}
			before := l.Stats()
			ev := Event{Type: TypeStatement, SessionID: "3f2a9c", Employee: "alice", Data: data}
			b.SetParallelism((8 + testingProcs() - 1) / testingProcs())
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := l.Append(context.Background(), ev); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			st := l.Stats()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			if syncs := st.Syncs - before.Syncs; syncs > 0 {
				b.ReportMetric(float64(b.N)/float64(syncs), "events/fsync")
			}
			if err := l.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

func testingProcs() int { return runtime.GOMAXPROCS(0) }
