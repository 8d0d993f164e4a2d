# make test   gofmt check, go vet, go test -race, a short run of every fuzz target
# make build  builds bin/ratelimitd
# make run    runs the server with the quickstart config
# make bench  runs the standard benchmark scenarios (cmd/internal/benchsuite)
#             against bin/: starts Redis, a Redis Cluster and ratelimitd on
#             loopback and rewrites the generated part of docs/benchmarks.md
#             and docs/img/bench-*.png (about 6 minutes). BENCHFLAGS adds
#             flags, e.g. BENCHFLAGS='-repeat 3 -json bench.json'.
# make soak   ratelimitd at half its measured maximum load for SOAK_DURATION
#             per backend (memory, then Redis); fails when RSS, goroutines,
#             fds or Redis connections grow; writes docs/soak.md
# make chaos  CHAOS_DURATION under load, Redis SIGKILLed for 5 s every minute,
#             a broken config swapped in every 10 s; writes docs/chaos.md
# make proto  lints proto/ and regenerates its Go code (buf and the protoc
#             plugins are pinned Go tool dependencies: go.mod's tool block)
#
# Everything runs from a fresh clone with nothing but Go installed;
# ensure-deps installs what the tests need when it is missing.

GO        ?= go
FUZZTIME  ?= 100000x
BIN       ?= bin

.PHONY: all test fmt-check vet unit fuzz ensure-deps build run clean proto bench soak chaos

all: test

test: ensure-deps fmt-check vet unit fuzz

# Fails listing the files gofmt would change (testdata excepted).
fmt-check:
	@files=$$(find . -name '*.go' -not -path './.git/*' -not -path '*/testdata/*' -print0 | xargs -0 -r gofmt -l); \
	if [ -n "$$files" ]; then echo "gofmt would change these files:"; echo "$$files"; exit 1; fi

vet:
	$(GO) vet ./...

# -p 1: one package's tests at a time. Several packages start Redis, Sentinel
# and Cluster processes; run together on two cores they starve each other
# (Sentinel then refuses to fail over while in TILT mode).
unit:
	$(GO) test -race -count=1 -p 1 ./...

# Runs every `func FuzzXxx` found in a _test.go file for FUZZTIME each: a
# count of inputs, not a duration. Go 1.26's fuzz coordinator can fail a
# duration-bounded run with "context deadline exceeded" when the deadline
# races a busy worker (go.dev/issue/75804, fixed in Go 1.27); a count has no
# deadline to race. 100000 inputs take 2 to 20 s per target here.
fuzz:
	@set -e; \
	grep -rl --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(' . 2>/dev/null | sort | while read -r file; do \
		dir=./$$(dirname "$${file#./}"); \
		for name in $$(sed -nE 's/^func (Fuzz[A-Za-z0-9_]*)\(.*/\1/p' "$$file"); do \
			echo "fuzz $$dir $$name ($(FUZZTIME))"; \
			$(GO) test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$(FUZZTIME) "$$dir"; \
		done; \
	done

# Installs the tools the tests need when they are missing: redis-server,
# redis-sentinel and redis-cli (Debian's redis-server, redis-sentinel and
# redis-tools packages) for the Redis backend's tests, which start real
# processes. Installed with apt-get when running as root; otherwise a
# message says what is missing, and those tests skip (or fail under CI=true).
REDIS_PKGS = redis-server redis-sentinel redis-tools

ensure-deps:
	@command -v $(GO) >/dev/null || { echo "go is not installed: see https://go.dev/dl/"; exit 1; }
	@if ! command -v redis-server >/dev/null || ! command -v redis-sentinel >/dev/null || ! command -v redis-cli >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing $(REDIS_PKGS)"; \
			DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(REDIS_PKGS) >/dev/null || exit 1; \
		else \
			echo "redis-server, redis-sentinel or redis-cli is missing and cannot be installed here (not root, or no apt-get): install $(REDIS_PKGS)"; \
		fi; \
	fi

build:
	$(GO) build -o $(BIN)/ratelimitd ./cmd/ratelimitd
	$(GO) build -o $(BIN)/ratelimitctl ./cmd/ratelimitctl

BENCHFLAGS ?=

bench: ensure-deps build
	$(GO) run ./cmd/internal/benchsuite -bin $(BIN) $(BENCHFLAGS)

SOAK_DURATION  ?= 10m
CHAOS_DURATION ?= 3m

soak: ensure-deps
	$(GO) run ./cmd/internal/soak -duration $(SOAK_DURATION) -out docs/soak.md $(SOAK_FLAGS)

chaos: ensure-deps
	$(GO) run ./cmd/internal/chaos -duration $(CHAOS_DURATION) -out docs/chaos.md $(CHAOS_FLAGS)

proto:
	$(GO) tool buf lint
	$(GO) tool buf generate

run:
	$(GO) run ./cmd/ratelimitd

clean:
	rm -rf $(BIN)
