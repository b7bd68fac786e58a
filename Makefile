# cckm-cancel-worker: every target works on a fresh machine with only Go.
GO       ?= go
BIN      := bin/cckm-cancel-worker
PKGS     := ./...

.PHONY: all build run run-core test chaos bench lint fuzz clean

all: lint test build

## build: the worker binary in bin/
build:
	$(GO) build -trimpath -o $(BIN) ./cmd/cckm-cancel-worker

## run: the worker in dev mode (embedded NATS, simulated CipherTrust Manager); Ctrl-C stops it
run: build
	./$(BIN) --dev

## run-core: dev mode in core mode, where `nats req` gets the result as its reply
# (the binary is run without a shell in between, so that Ctrl-C ends it quietly)
run-core: export WORKER_MODE := core
run-core: build
	./$(BIN) --dev

## test: every test with the race detector (fuzz seed corpora included)
test:
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

## chaos: the chaos tests (kill -9, NATS restart, a cluster node lost, CM faults, short-lived JWTs)
chaos:
	CCKM_CHAOS=1 $(GO) test -race -count=1 -timeout 15m -v ./chaos

## bench: the worker against the limit CipherTrust Manager allows (see README); BENCHFLAGS=-h for options
BENCHFLAGS ?=
bench:
	$(GO) run ./cmd/cckm-bench $(BENCHFLAGS)

## lint: formatting and vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

## fuzz: run each fuzz target for FUZZTIME (default 1m); crashers land in testdata/fuzz and become seeds
FUZZTIME ?= 1m
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseRequest$$' -fuzztime $(FUZZTIME) ./messages
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeResponse$$' -fuzztime $(FUZZTIME) ./cckmclient
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeJobMatchesMap$$' -fuzztime $(FUZZTIME) ./cckmclient
	$(GO) test -run '^$$' -fuzz '^FuzzResultJSON$$' -fuzztime $(FUZZTIME) ./messages

clean:
	rm -rf bin
