# netman: build, test and lint entry points. See README.md.
# Every recipe runs from the repository root with bash in strict mode.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

GO        ?= go
BIN       ?= bin
PKGS      ?= ./...
BENCH     ?= .
BENCHTIME ?= 1s

.PHONY: build test lint bench lab clean

## build: every ./cmd/<binary> as a static binary in bin/
build:
	mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/...

## test: the whole suite, exactly as CI runs it (brings up PostgreSQL/MariaDB; root runs the privileged tier)
test:
	scripts/test

## lint: gofmt, go vet, staticcheck
lint:
	@unformatted=$$(gofmt -l .); \
	if [[ -n $$unformatted ]]; then echo "gofmt needed on:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)

## bench: benchmarks only, one package at a time, against the same databases as the tests
bench:
	source scripts/lib/log.sh; source scripts/lib/db.sh; test_env_up; \
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) -count 1 -p 1 -timeout 30m $(PKGS)

## lab: start the local lab (scripts/lab; needs root)
lab:
	scripts/lab up

## clean: remove build output
clean:
	rm -rf $(BIN)
