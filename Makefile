# pgwarden: build, test, demo, benchmark.
GO ?= go

.PHONY: build test test-short lint fuzz demo

# Version, commit and date stamped into the binary (pgwarden version, the
# pgwarden_build_info metric). The date is the commit's, so that two builds
# of one commit are the same bytes.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
DATE ?= $(shell git log -1 --format=%cI 2>/dev/null)
BUILDINFO = github.com/pgwarden/pgwarden/internal/buildinfo
LDFLAGS ?= -X $(BUILDINFO).version=$(VERSION) -X $(BUILDINFO).commit=$(COMMIT) -X $(BUILDINFO).date=$(DATE)
BIN ?= bin/pgwarden

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/pgwarden

# The test command CI runs: needs only the PostgreSQL server binaries
# (the harness starts its own cluster).
test:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...

# staticcheck from the Go module proxy: unused code, misuse of the standard library.
lint:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# helm for the chart's tests (deploy/helm_test.go), built from deploy/tools
# at its pinned version and kept in the user cache directory. make test
# builds it too when it can within a few minutes, and skips the chart
# otherwise.
.PHONY: helm
helm:
	$(GO) test ./deploy -run 'TestHelm' -count=1 -v

test-short:
	$(GO) test -count=1 -short ./...

# Fuzz the frame reader, the startup parser, a session's bookkeeping, the
# policy parser and the statement shape scanner for a while each, then
# compare pgwarden with PostgreSQL on random message sequences,
# coverage-guided and seeded (test/protofuzz).
FUZZTIME ?= 30s
# A throwaway PostgreSQL, seeded customers, and a bulk read blocked by pgwarden.
demo:
	./scripts/demo.sh

fuzz:
	$(GO) test ./proxy -run '^$$' -fuzz '^FuzzFrameReader$$' -fuzztime $(FUZZTIME)
	$(GO) test ./proxy -run '^$$' -fuzz '^FuzzStartupPacket$$' -fuzztime $(FUZZTIME)
	$(GO) test ./proxy -run '^$$' -fuzz '^FuzzSession$$' -fuzztime $(FUZZTIME)
	$(GO) test ./policy -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./policy/sqltext -run '^$$' -fuzz '^FuzzShape$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s
	$(GO) test ./test/protofuzz -run '^$$' -fuzz '^FuzzAgainstPostgres$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 1x -parallel 1
	$(GO) run ./test/protofuzz/cmd -duration $(FUZZTIME)

# pgx v5's own test suite, direct and through pgwarden, compared (see
# test/compat/README.md). Takes a while; e.g.
#   make compat COMPAT_FLAGS='--packages ./pgconn --log-dir /tmp/compat'
.PHONY: compat
compat:
	$(GO) run ./test/compat $(COMPAT_FLAGS)

# Direct PostgreSQL vs pgwarden vs PgBouncer (session mode), same run, targets
# rotated each round (see test/bench/README.md). About 8 minutes by default; e.g.
#   make bench BENCH_FLAGS='-T 3 -rounds 1 -json /tmp/bench.json'
.PHONY: bench
bench:
	$(GO) run ./test/bench $(BENCH_FLAGS)

# Detection quality: a month of simulated employees and labelled attacks
# through a real pgwarden on a virtual clock (see test/sim). About a minute by
# default; e.g.
#   make simulate SIM_FLAGS='--employees 20 --days 10 --json /tmp/sim.json'
.PHONY: simulate
simulate:
	$(GO) run ./test/sim $(SIM_FLAGS)

# The same measure on organisation B, a company pgwarden was not tuned to
# (other roles, schema, events, channel attacks and policy; see
# docs/evaluation.md), on the seeds fixed before its first run. A few
# minutes per seed; e.g.
#   make simulate-b SIM_FLAGS='--employees 20 --days 10'
SIM_B_SEEDS ?= 11 12
.PHONY: simulate-b
simulate-b:
	@for s in $(SIM_B_SEEDS); do $(GO) run ./test/sim --org b --seed $$s $(SIM_FLAGS) || exit 1; done
