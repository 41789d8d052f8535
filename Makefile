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
RELEASE_DIR ?= build/release
GO_TARBALL  ?=

.PHONY: build test lint bench lab clean release-src

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

## lab: netman in a box: build, start the multi-cell lab, run the policy demo, remove it again
##   (scripts/lab up; needs root). LAB_ARGS="--keep --cells 3 --db postgres" passes options; see docs/lab.md.
LAB_ARGS ?=
lab:
	scripts/lab up $(LAB_ARGS)

## release-src: stage the BOSH release in $(RELEASE_DIR): jobs/, packages/, config/{final,blobs}.yml and
##   src/netman (go.mod, go.sum, the sources of the packaged commands, vendor/ without other platforms'
##   files). The golang blob is GO_TARBALL (a go*.linux-amd64.tar.gz), else packed from the local
##   toolchain; GO_TARBALL=none stages none. Then: cd $(RELEASE_DIR) && bosh create-release --force.
##   See docs/bosh-release.md.
release-src:
	@out=$(RELEASE_DIR); mod=$$out/src/netman; root=$$($(GO) list -m -f '{{.Dir}}'); \
	rm -rf "$$out"; mkdir -p "$$mod" "$$out/config"; \
	cp -R jobs packages "$$out/"; \
	cp config/final.yml config/blobs.yml "$$out/config/"; \
	cp go.mod go.sum "$$mod/"; \
	cmds=$$(grep -hoE '\./cmd/[a-z0-9-]+' packages/*/packaging | sort -u); \
	GOOS=linux GOARCH=amd64 CGO_ENABLED=0 $(GO) list -deps \
	  -f '{{if and .Module .Module.Main}}{{$$d := .Dir}}{{range .GoFiles}}{{$$d}}/{{.}}{{"\n"}}{{end}}{{range .EmbedFiles}}{{$$d}}/{{.}}{{"\n"}}{{end}}{{end}}' \
	  $$cmds | sed "s|^$$root/||" | sort -u | xargs cp --parents -t "$$mod"; \
	tools=$$(sed -nE 's/^ +([a-z0-9.-]+\.[a-z]+\/[^ \\]+).*/\1/p' packages/*/packaging | sort -u); \
	( cd "$$mod"; \
	  for t in $$(awk '/^tool \(/ {b=1; next} b && /^\)/ {b=0} b {print $$1} /^tool [^(]/ {print $$2}' go.mod); do \
	    $(GO) mod edit -droptool="$$t"; done; \
	  for t in $$tools; do $(GO) mod edit -tool="$$t"; done; \
	  $(GO) mod vendor; \
	  find vendor -type f -regextype posix-extended \
	    \( -regex '.*_(aix|android|darwin|dragonfly|freebsd|hurd|illumos|ios|js|nacl|netbsd|openbsd|plan9|solaris|wasip1|windows|zos)(_[a-z0-9]+)?\.(go|s)' \
	    -o -regex '.*_(386|arm|armbe|arm64be|loong64|mips|mipsle|mips64|mips64le|mips64p32|mips64p32le|ppc|ppc64|ppc64le|riscv|riscv64|s390|s390x|sparc|sparc64|wasm)\.(go|s)' \) \
	    -delete ); \
	case "$(GO_TARBALL)" in \
	  none) echo "no golang blob staged (GO_TARBALL=none)";; \
	  *) mkdir -p "$$out/blobs/golang"; \
	     if [[ -n "$(GO_TARBALL)" ]]; then \
	       blob=golang/$$(basename "$(GO_TARBALL)"); cp "$(GO_TARBALL)" "$$out/blobs/$$blob"; \
	     else \
	       [[ $$($(GO) env GOHOSTOS)/$$($(GO) env GOHOSTARCH) == linux/amd64 ]] || \
	         { echo "not on linux/amd64: give GO_TARBALL=<go*.linux-amd64.tar.gz>" >&2; exit 1; }; \
	       blob=golang/$$($(GO) env GOVERSION).linux-amd64.tar.gz; \
	       echo "packing $$($(GO) env GOROOT) as blobs/$$blob"; \
	       tar -C "$$($(GO) env GOROOT)" --transform 's,^\.,go,' -czf "$$out/blobs/$$blob" .; \
	     fi; \
	     printf -- '---\n%s:\n  size: %s\n  sha: sha256:%s\n' "$$blob" \
	       "$$(stat -c %s "$$out/blobs/$$blob")" "$$(sha256sum "$$out/blobs/$$blob" | cut -d' ' -f1)" \
	       >"$$out/config/blobs.yml";; \
	esac; \
	echo "release staged in $$out"

## clean: remove build output
clean:
	rm -rf $(BIN)
