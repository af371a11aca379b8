# Walship developer entry points. `make test` and `make demo` work on a fresh machine:
# everything they need is installed by the project's own scripts.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

WALSHIP_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/walship
export WALSHIP_CACHE
# No cloud SDK may probe a metadata endpoint (off this machine) for credentials in tests or demos.
export AWS_EC2_METADATA_DISABLED = true
NODE = $(shell scripts/ensure-node)
TSC = $(NODE) node_modules/typescript/bin/tsc
BIOME = node_modules/.bin/biome
# Test selection: `make test-unit`, or `make test TESTS='test/unit/wal.test.ts'`.
TESTS ?= test/unit/*.test.ts test/integration/*.test.ts test/smoke/*.test.ts test/e2e/*.test.ts
TEST_FLAGS ?= --test-concurrency=1 --test-timeout=900000

.PHONY: help deps node build check lint typecheck crds crds-check actionlint deploy-manifests plugin-dist chart-package test test-unit test-integration test-smoke test-e2e infra image images demo demo-local demo-down deploy clean bench fuzz fuzz-corpus torture-faults torture deploy-check bench-crypto bench-startup bench-page-writes bench-destinations bench-tick bench-integrity-check

help: ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

node: ## install the pinned Node 24 into the cache (once)
	@scripts/ensure-node >/dev/null

# `npm install --no-save` against the committed lock: npm 11 here prunes other platforms' optional
# binaries from the lock it writes and then rejects that lock in `npm ci`, and it toggles
# hasInstallScript depending on whether node_modules exists. --no-save leaves the lock as committed.
# npm turns on Node's compile cache, in /tmp unless told where: it goes to the cache instead.
node_modules/.installed: package.json package-lock.json | node
	PATH="$$(dirname $(NODE)):$$PATH" NODE_COMPILE_CACHE="$(WALSHIP_CACHE)/npm-compile-cache" \
	  npm install --no-save --no-audit --no-fund
	@touch $@

deps: node_modules/.installed ## install Node and the npm dependencies

dist/.built: node_modules/.installed tsconfig.json $(shell find src -name '*.ts' 2>/dev/null)
	rm -rf dist
	$(TSC) -p tsconfig.json
	@touch $@

build: dist/.built ## compile the CLI into dist/ (bin/walship runs it)

typecheck: deps ## type-check sources, tests and benchmarks
	$(TSC) -p tsconfig.test.json

lint: deps ## biome lint and format check
	$(NODE) $(BIOME) check .

crds: deps ## regenerate crds/ from the zod schemas in src/api/v1alpha1
	$(NODE) scripts/gen-crds.ts

crds-check: deps ## fail if crds/ differs from what the schemas generate
	$(NODE) scripts/gen-crds.ts --check

deploy-manifests: deps ## render deploy/operator.yaml (kubectl apply -k deploy/) from charts/walship with helm template
	test/infra/install helm
	$(NODE) scripts/render-deploy.ts

# The workflows cannot run here; actionlint (built once from the Go module proxy) checks them, and
# their run: scripts with shellcheck.
actionlint: ## lint .github/workflows (actionlint, with shellcheck for the run: scripts)
	@test/infra/install actionlint >/dev/null
	$(WALSHIP_CACHE)/bin/actionlint -shellcheck="$$(command -v shellcheck || true)" -pyflakes=

check: lint typecheck crds-check deploy-check actionlint ## static checks

plugin-dist: deps ## the kubectl plugin as one file, its release archive and krew manifest, in dist/release/ (VERSION=v1.2.3)
	$(NODE) scripts/plugin-dist.ts $(if $(VERSION),--version $(VERSION))

chart-package: ## helm package charts/walship into dist/release/ (the links to crds/ and deploy/rbac are followed)
	test/infra/install helm
	$(WALSHIP_CACHE)/bin/helm package charts/walship --destination dist/release
deploy-check: deps ## fail if deploy/operator.yaml differs from what the chart renders
	@test/infra/install helm >/dev/null
	$(NODE) scripts/render-deploy.ts --check


infra: ## build or reuse the real test components (MinIO, litestream, etcd, Kubernetes and the node's parts, helm)
	test/infra/install

image: deps ## build the walship image from the Dockerfile (buildah, no registry) and print its reference
	test/infra/images walship

images: deps infra ## build or reuse every image the real node runs (walship, the test app, pause, helpers)
	test/infra/images

test: deps build check infra images ## install everything the tests need and run them all
	$(NODE) --test $(TEST_FLAGS) $(TESTS)

# FUZZ_SECONDS per target (7 targets); figures in .fuzz/fuzz.json; findings go to test/fuzz/corpus/*/crash-*.
FUZZ_SECONDS ?= 60
fuzz: deps ## property-based fuzzing of the WAL parser, LZ4 decoder, config loader and restore planner (FUZZ_SECONDS each)
	@mkdir -p .fuzz
	nice -n 10 $(NODE) test/fuzz/run.ts --seconds $(FUZZ_SECONDS) --out .fuzz/fuzz.json

# The storage-fault and fuzzing torture part alone (`make torture TORTURE_PARTS=faults`, about 30 min with
# these defaults); figures in torture/results/<time>.json.
FAULT_SECONDS ?= 60
OUTAGE_SECONDS ?= 300
FAULTS_MEMORY ?= 384Mi
torture-faults: ## storage faults (each kind FAULT_SECONDS, a MinIO outage OUTAGE_SECONDS; the replicator under FAULTS_MEMORY) and fuzzing (FUZZ_SECONDS per target)
	TORTURE_PARTS=faults TORTURE_FAULT_SECONDS=$(FAULT_SECONDS) TORTURE_OUTAGE_SECONDS=$(OUTAGE_SECONDS) \
	  TORTURE_FAULTS_MEMORY=$(FAULTS_MEMORY) TORTURE_FUZZ_SECONDS=$(FUZZ_SECONDS) $(MAKE) torture

fuzz-corpus: deps ## rebuild the fuzzers' seed corpus (test/fuzz/corpus/*/seed-*)
	$(NODE) test/fuzz/make-corpus.ts

test-unit: deps build ## only the fast unit tests
	$(NODE) --test $(TEST_FLAGS) test/unit/*.test.ts

test-integration: deps build infra images ## the integration suites (real SQLite, MinIO, litestream, the image)
	$(NODE) --test $(TEST_FLAGS) test/integration/*.test.ts

test-smoke: deps build infra images ## the test components themselves (MinIO, litestream, control plane, the real node)
	$(NODE) --test $(TEST_FLAGS) test/smoke/*.test.ts

test-e2e: deps build infra images ## the end-to-end suites on the real node (needs root)
	$(NODE) --test $(TEST_FLAGS) test/e2e/*.test.ts

demo: deps build ## Walship on a local cluster (a real node): helm install, a StatefulSet replicating to MinIO, live status, a SqliteRestore (KEEP=1 leaves it up)
	test/infra/install minio etcd kubernetes helm crictl local-path-provisioner
	test/infra/images
	$(NODE) scripts/demo-cluster.ts $(if $(KEEP),--keep)

demo-local: deps build ## the replicator alone, no cluster: replicate a sample database to a directory, restore it, compare
	$(NODE) scripts/demo.ts

demo-down: ## stop a `make demo KEEP=1` left running and clean up
	@if [ -f .demo/cluster/pid ]; then pid=$$(cat .demo/cluster/pid); \
	  if kill -TERM $$pid 2>/dev/null; then for i in $$(seq 60); do kill -0 $$pid 2>/dev/null || break; sleep 1; done; fi; fi
	rm -rf .demo/cluster

deploy: ## helm install (or upgrade) the chart into the cluster that KUBECONFIG points at (IMAGE=repo:tag to override)
	test/infra/install helm
	$(WALSHIP_CACHE)/bin/helm upgrade --install walship charts/walship --namespace walship-system --create-namespace \
	  $(if $(IMAGE),--set image.repository=$(firstword $(subst :, ,$(IMAGE))) --set image.tag=$(lastword $(subst :, ,$(IMAGE))))

clean: ## remove build output (the component cache under $(WALSHIP_CACHE) stays)
	rm -rf dist node_modules .demo

# etcd and Kubernetes only when the operator phase runs (on a cold cache Kubernetes takes a quarter of an hour).
bench: deps build ## compare walship with litestream v0.3.13, median of three passes (lag, throughput, CPU, memory, idle memory, snapshot, restore; about 100 min)
	test/infra/install minio litestream $$(case ",$${BENCH_PHASES:-operator}," in *,operator,*) echo etcd kubernetes;; esac)
	$(NODE) bench/run.ts

bench-startup: deps build ## how long `version` and a small restore take from exec to exit, against litestream v0.3.13
	test/infra/install litestream
	$(NODE) bench/startup.ts

bench-destinations: deps build ## one workload on S3, GCS, Azure Blob and SFTP, both tools, each against its S3 figure (median of three passes; about 20 min; as root, for sshd)
	test/infra/install minio litestream fake-gcs-server
	$(NODE) bench/destinations.ts

bench-tick: deps build ## one sync tick at 100ms, seen by a proxy before MinIO: where each tool's lag goes, and its requests
	test/infra/install minio litestream
	$(NODE) bench/tick.ts

bench-page-writes: deps ## what restore's page writes cost the kernel by batch size (1 GiB file; DIR=... for another file system)
	$(NODE) bench/page-writes.ts $(DIR)

bench-integrity-check: deps ## what restore's integrity check costs, read by default and through a memory map (two 512 MiB databases, about 6 minutes)
	$(NODE) bench/integrity-check.ts $(DIR)

bench-crypto: deps build ## the CPU cost of age encryption per GiB of WAL (pipeline and end to end, a few minutes)
	test/infra/install minio
	$(NODE) bench/crypto.ts

torture: deps build ## reliability runs: SIGKILLs with restores compared, point-in-time restores, soak, storage faults (TORTURE_PARTS, TORTURE_QUICK=1; docs/reliability.md)
	test/infra/install minio litestream toxiproxy
	TORTURE_COMMIT=$${TORTURE_COMMIT:-$$(git rev-parse --short HEAD 2>/dev/null)} nice -n $${TORTURE_NICE:-10} $(NODE) torture/run.ts
