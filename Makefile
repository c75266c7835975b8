# vtcluster: build, test and demo. Every target installs what it needs.
GO        ?= go
PREFIX    ?= /usr/local
BIN       := bin/vtcluster
VENV      := .venv
PY        := $(VENV)/bin/python
VERSION   ?= $(shell cat VERSION 2>/dev/null || echo 0.1.0)
# One random id per make run, in both binaries of a build: the deployer
# uploads bin/vtcluster-agent only when its id is the running vtcluster's,
# so a stale agent-only binary is never deployed.
BUILD_ID  := $(shell od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
GOFLAGS_BUILD := -trimpath -ldflags "-s -w -X github.com/vtcluster/vtcluster/bridge.Version=$(VERSION) -X github.com/vtcluster/vtcluster/bridge.BuildID=$(BUILD_ID)"

# staticcheck runs from the Go module proxy at a pinned version, so a fresh
# machine needs nothing but Go.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
# goimports, likewise: the format check keeps this module's imports in a
# group of their own after the standard library's and the others'.
GOIMPORTS ?= golang.org/x/tools/cmd/goimports@v0.53.0
# How long each fuzz target runs under make fuzz.
FUZZTIME  ?= 30s
# go test's guard per package binary (its default is 10m): the bridge
# package alone needs about 14 minutes at 0.2 CPU, where the default ends
# it with "panic: test timed out" that reads like a hang. Raise it on a
# slower machine (docs/debugging-failures.md).
GO_TEST_TIMEOUT ?= 20m

.PHONY: guest all build build-agent install test go-test unit lint py-test vet fmt-check demo venv bench bench-compare fuzz clean system-packages install-plugin

all: build

# Static, so the same file runs on every node it is uploaded to. Beside it
# the agent-only build (tag vtcluster_noetcd: no etcd client, whose package
# initialisation Go runs at every start-up and which would grow every
# agent's memory); bootstrap and agents deploy it by default.
build:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(BIN).new .
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -tags vtcluster_noetcd -o bin/vtcluster-agent.new .
	mv -f $(BIN).new $(BIN)
	mv -f bin/vtcluster-agent.new bin/vtcluster-agent
	ln -sf vtcluster bin/avocado-runner-multihost

# Kept for scripts that name it; make build builds both.
build-agent: build

install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/vtcluster
	install -m 0755 bin/vtcluster-agent $(DESTDIR)$(PREFIX)/bin/vtcluster-agent
	ln -sf vtcluster $(DESTDIR)$(PREFIX)/bin/avocado-runner-multihost

# The Debian packages of scripts/system-packages.txt that are missing:
# installed when root with apt-get, otherwise named (the tests that need
# them skip, saying why). VTCLUSTER_INSTALL=no only names them.
system-packages:
	@bash scripts/install-packages.sh

# The Avocado plugin (pyshim/) into your own Avocado: PYTHON is the
# interpreter that runs it (make install-plugin PYTHON=~/venv/bin/python).
# Built from a copy, so the source tree gets no build/ or egg-info.
PYTHON ?= python3
install-plugin:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && cp -R pyshim "$$tmp/" && \
	rm -rf "$$tmp"/pyshim/build "$$tmp"/pyshim/*.egg-info && \
	$(PYTHON) -m pip install --quiet "$$tmp/pyshim" && \
	echo "installed the multihost plugins into $$($(PYTHON) -c 'import sys; print(sys.prefix)'); check with: avocado plugins | grep multihost"

venv:
	bash scripts/venv.sh

venv-vt:
	bash scripts/venv.sh --vt

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@out=$$($(GO) run $(GOIMPORTS) -local github.com/vtcluster/vtcluster -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "goimports -local github.com/vtcluster/vtcluster needed:"; echo "$$out"; exit 1; fi

# Tests run the binary make build made (internal/testbin), not one of their own.
go-test: build system-packages
	VTCLUSTER_BIN="$(CURDIR)/$(BIN)" $(GO) test -race -count=1 -timeout $(GO_TEST_TIMEOUT) ./...

# The fast loop: no lab hosts (they skip under -short), no race detector.
# The output is also kept in bin/unit.log: a failure seen by a caller that
# discards it (a hook, a loop) can still be read afterwards.
unit: build
	@{ VTCLUSTER_BIN="$(CURDIR)/$(BIN)" $(GO) test -short -count=1 ./...; echo $$? >bin/unit.rc; } 2>&1 | tee bin/unit.log
	@exit $$(cat bin/unit.rc)

lint:
	$(GO) run $(STATICCHECK) ./...

# The upstream-interop tests import avocado-vt's own controller code
# (virttest.vt_cluster), so they run in .venv-vt, which has it; the shim's
# with-avocado-vt tests drive .venv-vt from the main venv.
py-test: build venv venv-vt system-packages
	PATH="$(CURDIR)/bin:$$PATH" VTCLUSTER_BIN="$(CURDIR)/$(BIN)" $(PY) -m pytest -q tests/python
	PATH="$(CURDIR)/bin:$$PATH" VTCLUSTER_BIN="$(CURDIR)/$(BIN)" .venv-vt/bin/python -m pytest -q tests/python/test_upstream_proxy.py tests/python/test_upstream_resmgr.py

# The README's test command: everything, Go (with -race) and Python.
test: fmt-check vet lint go-test py-test

# The tiny guest the VM tests and the demo boot (docs/vms.md), cached under build/guest.
guest:
	bash scripts/guest.sh

# The main job end to end on a local embedded three-host lab.
demo: build venv
	bash scripts/demo.sh

bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./...

# vtcluster against upstream's Python design on this machine (docs/performance.md).
bench-compare:
	bash scripts/bench/run.sh

# Every fuzz target of every package, FUZZTIME each (go test -fuzz takes
# one target at a time).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$target ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

clean:
	rm -rf bin $(VENV) .venv-vt
