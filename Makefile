# The targets here are exactly what CI runs (.ci/run installs dependencies, then `make test`).
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
FEDERATOR := target/debug/federator
# The lab's own CLI (docs/lab.md): the product binary does not link the lab.
FEDERATOR_LAB := target/debug/federator-lab
# The demo lab (`make demo`) and the lab the e2e tests start are separate: own dirs, own ports.
LAB_DIR ?= .lab
E2E_LAB_DIR ?= target/e2e-lab
E2E_REAL_LAB_DIR ?= target/e2e-lab-real

.PHONY: fuzz help deps deps-real build install demo lab-down lab-status test test-real fmt-check clippy no-openssl deny crds-check chart-check image image-check unit e2e-lab-down bench bench-real bench-region

help:
	@echo "make demo      lab up in $(LAB_DIR)/, the ring of three, the controller, one switchover (leaves it running)"
	@echo "make lab-down  stop the demo lab"
	@echo "make deps-real what the real-CNPG lab tier needs (docs/lab-real.md), built and cached"
	@echo "make test      fmt, clippy, no-OpenSSL check, cargo deny, CRD drift check, every test (e2e on a real lab), the real-CNPG subset"
	@echo "make test-real the real-CNPG tier's e2e tests (root; real nodes, the real operator; docs/lab-real.md)"
	@echo "make image     the Federator image (OCI archive in target/image/) from Debian packages, no registry"
	@echo "make fuzz      libFuzzer on every parser of outside input (nightly; FUZZ_SECONDS or FUZZ_RUNS per target), not part of make test"
	@echo "make bench     the planner bench, then the switchover bench on the e2e lab (docs/benchmarks.md)"
	@echo "make bench-real the switchover bench on real CloudNativePG (root, deps-real; not part of make test)"
	@echo "make bench-region N region switches at once vs each alone, and the controller at 200 topologies (docs/benchmarks.md)"

# Debian packages, Rust components and kube-apiserver; a quick no-op when all are present.
deps:
	bash hack/install-deps.sh

# deps, plus the real-CNPG lab tier: containerd, runc, CNI plugins, iptables (Debian), the node
# binaries, CoreDNS and the CNPG operator (Go module proxy) and the images; docs/lab-real.md.
deps-real:
	bash hack/install-deps.sh --real

# The CLI, the lab's CLI and the CNPG emulator the lab starts (found next to `federator-lab`).
build:
	$(CARGO) build -p federator -p federator-e2e --bins

# The CLI (release build) into $(PREFIX)/bin, with the kubectl plugin name beside it.
PREFIX ?= $(HOME)/.local
install:
	$(CARGO) build --release --locked -p federator
	install -D -m 0755 target/release/federator $(PREFIX)/bin/federator
	ln -sf federator $(PREFIX)/bin/kubectl-federator

# Lab up, the ring of three applied, the controller started, one switchover, the status table.
demo: deps build
	LAB_DIR=$(LAB_DIR) FEDERATOR=$(FEDERATOR) FEDERATOR_LAB=$(FEDERATOR_LAB) bash hack/demo.sh

lab-status: build
	$(FEDERATOR_LAB) status --dir $(LAB_DIR)

lab-down: build
	@if [[ -f $(LAB_DIR)/controller.pid ]]; then kill "$$(cat $(LAB_DIR)/controller.pid)" 2>/dev/null || true; rm -f $(LAB_DIR)/controller.pid; fi
	$(FEDERATOR_LAB) down --dir $(LAB_DIR)

# The real subset runs with --workspace: the feature set of the run before it, so nothing is
# rebuilt (with -p the e2e crate and kube were built again: 2 min and 5 GB on a fresh clone).
test: deps-real fmt-check clippy no-openssl deny crds-check chart-check image-check
	$(CARGO) test --workspace --no-fail-fast
	$(CARGO) test --workspace $(REAL_SUBSET) -- --ignored

# The e2e tests on the real-CNPG tier (e2e/tests/real_*.rs, ignored by a plain `cargo test`):
# their own lab in target/e2e-lab-real on the harness ports + 20, the real CloudNativePG operator
# on real nodes. Needs root. `make test` runs REAL_SUBSET (docs/lab-real.md: what each costs).
REAL_SUBSET := --test real_pair --test real_ring --test real_crash --test real_install
REAL_TESTS := $(patsubst e2e/tests/%.rs,--test %,$(wildcard e2e/tests/real_*.rs))
test-real: deps-real
	$(CARGO) build -p federator -p federator-e2e --bins
	$(CARGO) test --workspace $(REAL_TESTS) -- --include-ignored

fmt-check:
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Federator uses rustls only. `cargo tree -i` exits non-zero with "did not match any packages"
# when openssl-sys is absent (the pass case); any other outcome fails.
no-openssl:
	@if out="$$($(CARGO) tree --workspace --target all -i openssl-sys 2>&1)"; then \
	  echo "openssl-sys is in the dependency tree:"; echo "$$out"; exit 1; \
	elif grep -q "did not match any packages" <<<"$$out"; then \
	  echo "no-openssl: ok (openssl-sys is not a dependency)"; \
	else \
	  echo "$$out"; exit 1; \
	fi

# cargo deny (deny.toml): advisories, licences, bans (no OpenSSL), sources. Advisories need the
# RustSec database on disk; nothing is fetched (docs/dependencies.md).
deny:
	bash hack/deny.sh

# Committed CRDs (deploy/crds/) must match what the Rust types generate. Runs once
# `federator crds --check` exists; until then there are no generated CRDs to drift.
crds-check: build
	@if $(FEDERATOR) crds --help 2>/dev/null | grep -q -- '--check'; then \
	  $(FEDERATOR) crds --check; \
	else \
	  echo "crds-check: \`federator crds --check\` is not implemented yet; nothing to compare"; \
	fi

# The Helm chart: helm lint, its CRDs equal deploy/crds/, deploy/federator.yaml a fresh render
# (`hack/chart.sh render` rewrites it); its PrometheusRule and dashboard read only exported
# metrics and labels, and every alert has its runbook in docs/operations.md.
chart-check:
	bash hack/chart.sh check
	$(CARGO) test -q -p federator --test chart_metrics

# The image with the release binary (docs/install.md); `ctr image import` takes the archive.
image:
	bash hack/build-federator-image.sh

# The image's layout, checked with the debug binary (a release build would add minutes to the
# gate): runs as 65532, the binary runs in its rootfs, no shell, no OpenSSL.
image-check: build
	bash hack/test-federator-image.sh --binary $(FEDERATOR)

# Benchmarks that print tables (docs/benchmarks.md): validate + plan at scale, then write
# unavailability of a switchover on the e2e lab (Federator, release build, vs. the manual steps).
bench: deps
	$(CARGO) bench -p federator-topology --bench validate_plan
	$(CARGO) build --release -p federator
	$(CARGO) bench -p federator-e2e --bench switchover

# The switchover bench on the real-CNPG tier (its own lab, target/e2e-lab-real on the harness
# ports + 20; root): the shapes in BENCH_REAL_SHAPES (the pair and the ring of three), each
# channel in BENCH_REAL_CHANNELS, BENCH_REAL_ROUNDS rounds of three switchovers (6 = each driver
# 6 switchovers per shape, every direction alike). Debug builds: real CloudNativePG's steps take
# seconds, the controller's reaction milliseconds (the bench prints both); docs/benchmarks.md.
BENCH_REAL_ROUNDS ?= 6
BENCH_REAL_SHAPES ?= pair,ring
BENCH_REAL_CHANNELS ?= streaming archive
bench-real: deps-real
	$(CARGO) build -p federator -p federator-e2e --bins
	for channel in $(BENCH_REAL_CHANNELS); do \
	  $(CARGO) bench --profile dev -p federator-e2e --bench switchover -- \
	    --cnpg real --shapes $(BENCH_REAL_SHAPES) --channel "$$channel" \
	    --rounds $(BENCH_REAL_ROUNDS) || exit 1; \
	done

# Whole-region operations (issue #17; docs/benchmarks.md): N pairs moved at once against each
# alone (wall time, each database's write gap), and the release controller's memory and idle CPU
# holding 200 status-only pairs. Options: BENCH_REGION_ARGS (e.g. --n 10 --topologies 200
# --rounds 2 --only moves).
BENCH_REGION_ARGS ?=
bench-region: deps
	$(CARGO) build --release -p federator
	$(CARGO) bench -p federator-e2e --bench region_switch -- $(BENCH_REGION_ARGS)

unit:
	$(CARGO) test --workspace --lib --bins

e2e-lab-down:
	@if [[ -f $(E2E_LAB_DIR)/state.json ]]; then $(FEDERATOR_LAB) down --dir $(E2E_LAB_DIR); fi
	@if [[ -f $(E2E_REAL_LAB_DIR)/state.json ]]; then $(FEDERATOR_LAB) down --dir $(E2E_REAL_LAB_DIR); fi

# Coverage-guided fuzzing (nightly, libFuzzer; hack/fuzz.sh, docs/faults.md). Separate from
# `make test` because a fresh machine may not be able to download nightly; `make test` replays the
# committed corpus and regressions on stable (fuzzing/tests/corpus.rs).
fuzz:
	bash hack/fuzz.sh
