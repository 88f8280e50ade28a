# vidx: the production indexer for text-to-video retrieval.
# `make demo` and `make test` install what they need (`make setup`) on Debian.

SHELL := /bin/bash
SWIFT ?= swift
PYTHON ?= python3
CONFIG ?= release
BUILD_FLAGS ?=
BIN = .build/$(CONFIG)

# Debian packages the project needs: FFmpeg's libraries and command-line tool (tests
# and benchmarks generate their clips with it), OpenBLAS, pkg-config, GNU time.
APT_PACKAGES = libavformat-dev libavcodec-dev libavutil-dev libswscale-dev libswresample-dev \
               ffmpeg libopenblas-dev pkg-config time strace prometheus-node-exporter curl
PIP_PACKAGES = numpy jsonschema pytest
# Slurm and munge, for `make test-slurm` (a one-node cluster started by the test itself).
SLURM_PACKAGES = slurm-wlm munge

.PHONY: all setup setup-slurm build test test-slurm demo index nightly rebuild compact reshard slurm models bench-decode bench-encode bench-search bench-extract bench-pipeline bench-plan bench-shard bench-quality setup-quality fuzz fuzz-ci clean

all: build

# $(call apt_install,TARGET,PACKAGES): installs only the missing Debian packages
# (apt-get update first when some are missing). Idempotent.
define apt_install
	@missing=""; for p in $(2); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "$(1): installing$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "$(1): Debian packages present"; fi
endef

setup:
	$(call apt_install,setup,$(APT_PACKAGES))
	@for p in $(PIP_PACKAGES); do \
	  $(PYTHON) -c "import $$p" 2>/dev/null || { echo "setup: pip install $$p"; $(PYTHON) -m pip install -q $$p; }; \
	done

# The Slurm packages (in a container they start no daemon; the test starts its own).
setup-slurm: setup
	$(call apt_install,setup-slurm,$(SLURM_PACKAGES))

build: setup
	$(SWIFT) build -c $(CONFIG) $(BUILD_FLAGS)

test: setup models
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build
	$(PYTHON) -m pytest -q Tests/Python

# The main job on an embedded default: the pipeline on generated clips (Pipelines/demo.sh):
# `vidx-pipeline run --mode index` over six clips (one broken: quarantined, exit status 3
# shown, not propagated), verify, search by example, then a nightly run with two new clips
# and a changed one (an append generation; the old entry superseded), then a second
# nightly run that changes nothing. Starts from a clean demo-out/ every time.
DEMO = demo-out
demo: build models
	@Pipelines/demo.sh $(BIN) $(DEMO)

# The pipeline (Pipelines/index.mk; Documentation/Pipeline.md): INPUT=DIR_OR_LIST INDEX=DIR,
# optionally WORK=DIR CONFIG=FILE BUNDLE=DIR JOBS=N METRICS=FILE.
PIPELINE_MAKE = $(MAKE) --no-print-directory -f Pipelines/index.mk $@ BIN=$(abspath $(BIN))
index: build models
	@$(PIPELINE_MAKE)
nightly: build models
	@$(PIPELINE_MAKE)
rebuild: build models
	@$(PIPELINE_MAKE)
compact: build models
	@$(PIPELINE_MAKE)
reshard: build models
	@$(PIPELINE_MAKE)

# The pipeline on a real one-node Slurm cluster started in a temporary directory
# (Pipelines/slurm/test-slurm.sh): the index must equal vidx-pipeline run's, a cancelled
# task is resubmitted, every daemon is stopped.
test-slurm: setup-slurm build models
	Pipelines/slurm/test-slurm.sh $(BIN)

# The plan's units on Slurm (Pipelines/slurm/README.md): INPUT=... INDEX=... as for index.
slurm: build models
	@$(PIPELINE_MAKE)

# The starter model bundle (seeded, untrained weights shaped for the built-in experts).
# The starter bundle: seeded random weights (make_starter.py), then its codebooks fitted on
# 320 generated sample clips (fit_starter.py) with release builds of the three tools it
# runs (the encoder in a debug build would take many minutes). Skipped when up to date.
FIT_TOOLS = vidx-extract vidx-encode vidx-fit-codebooks
models: setup
	$(PYTHON) Pipelines/models/make_starter.py models/.starter-untrained
	$(PYTHON) Pipelines/models/convert_efficientnet.py --out models/efficientnet-lite0 --download-dir models/.downloads
	@for p in $(FIT_TOOLS); do $(SWIFT) build -c release $(BUILD_FLAGS) --product $$p || exit 1; done
	$(PYTHON) Pipelines/models/fit_starter.py --bin .build/release --source models/.starter-untrained \
	  --cnn models/efficientnet-lite0/weights.safetensors --out models/starter --workdir models/.starter-fit

bench-decode: build
	$(PYTHON) Pipelines/bench/bench_decode.py --vidx $(BIN)/vidx-decode --workdir bench-out

bench-encode: build
	$(PYTHON) Pipelines/bench/bench_encode.py --bin $(BIN) --workdir bench-out/encode

bench-search: build
	$(PYTHON) Pipelines/bench/bench_search.py --bin $(BIN) --workdir bench-out/search

bench-extract: build models
	$(PYTHON) Pipelines/bench/bench_extract.py --bin $(BIN) --workdir bench-out/extract

# The pipeline from nothing (make index -j 2 on 20 generated 720p clips, 10+ minutes of
# video) against decoding alone; then vidx-plan on 1,000,000 uploads against an index of
# 1,000,000 videos (time and peak memory).
bench-pipeline: build models
	$(PYTHON) Pipelines/bench/bench_pipeline.py --bin $(BIN) --workdir bench-out/pipeline
	$(PYTHON) Pipelines/bench/bench_plan.py --bin $(BIN) --workdir bench-out/plan

bench-plan: build models
	$(PYTHON) Pipelines/bench/bench_plan.py --bin $(BIN) --workdir bench-out/plan

# vidx-shard at cluster scale: 10 M synthetic videos into 64 shards (build, verify,
# append of 100 k, compaction): time, peak memory, bytes/s against the disk's own write
# speed. Needs about 15 GB of disk in bench-out/shard; VIDEOS=N for a smaller run.
bench-shard: build models
	$(PYTHON) Pipelines/bench/bench_shard.py --bin $(BIN) --workdir bench-out/shard $(if $(VIDEOS),--videos $(VIDEOS) --small $$(( $(VIDEOS) / 10 )))

# Codebook fitting and what quantization costs (Pipelines/bench/bench_quality.py): 50,000
# synthetic videos' embeddings, 10 % held out; vidx-fit-codebooks beside FAISS's
# ProductQuantizer on the same sample and threads; the fidelity table, fidelity.json and
# recall.png in bench-out/quality/fidelity. VIDEOS=N for another size.
setup-quality: setup
	@$(PYTHON) -c "import faiss, matplotlib" 2>/dev/null || { echo "setup-quality: pip install faiss-cpu matplotlib"; $(PYTHON) -m pip install -q faiss-cpu matplotlib; }

bench-quality: build setup-quality
	$(PYTHON) Pipelines/bench/bench_quality.py --bin $(BIN) --workdir bench-out/quality $(if $(VIDEOS),--videos $(VIDEOS))

# Fuzzing (libFuzzer + AddressSanitizer) of every reader: index shards, safetensors, NPY,
# bundle.json and MANIFEST.json. SwiftPM builds `vidx-fuzz` from the package's own targets
# with the flags below; only Swift compiles change (-Xswiftc), so the C targets of a
# scratch path that already holds a build are reused. Each target runs FUZZ_SECONDS from
# the seeds of Fuzz/make_seeds.py and the corpus it grew before
# ($(FUZZ_SCRATCH)/fuzz/TARGET/corpus). All five run; a crash fails the target and leaves
# its input in $(FUZZ_SCRATCH)/fuzz/TARGET/crash-* (replay it: `vidx-fuzz TARGET FILE`, or
# the fuzz binary with the file as its argument) and libFuzzer's log beside it.
# `make fuzz-ci` is the same for a few seconds each, into the debug build `make test` left.
FUZZ_TARGETS = shard safetensors npy bundle manifest
FUZZ_SECONDS ?= 60
FUZZ_SCRATCH ?= .build-fuzz
FUZZ_CONFIG ?= release
FUZZ_FLAGS = -Xswiftc -parse-as-library -Xswiftc -DFUZZING -Xswiftc -sanitize=fuzzer,address \
             -Xswiftc -enable-experimental-feature -Xswiftc Extern
FUZZ_BUILD = $(SWIFT) build --scratch-path $(FUZZ_SCRATCH) -c $(FUZZ_CONFIG) $(FUZZ_FLAGS)
fuzz: setup
	$(FUZZ_BUILD) --product vidx-fuzz
	@bin="$$($(FUZZ_BUILD) --show-bin-path)/vidx-fuzz"; work=$(FUZZ_SCRATCH)/fuzz; failed=""; \
	rm -rf $$work/seeds && $(PYTHON) Fuzz/make_seeds.py $$work/seeds; \
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p $$work/$$t/corpus; dict=""; [ -f Fuzz/$$t.dict ] && dict="-dict=Fuzz/$$t.dict"; \
	  if VIDX_FUZZ_TARGET=$$t "$$bin" -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 $$dict \
	       -print_final_stats=1 -artifact_prefix=$$work/$$t/ $$work/$$t/corpus $$work/seeds/$$t > $$work/$$t/log.txt 2>&1; then \
	    echo "fuzz $$t: ok, $$(sed -n 's/^stat::number_of_executed_units: *//p' $$work/$$t/log.txt) inputs in $(FUZZ_SECONDS) s"; \
	  else \
	    failed="$$failed $$t"; tail -n 40 $$work/$$t/log.txt; \
	    echo "fuzz $$t: FAILED: $$(ls $$work/$$t/ | grep -E '^(crash|leak|timeout|oom)-' | sed "s|^|$$work/$$t/|" | tr '\n' ' ')(log: $$work/$$t/log.txt)"; \
	  fi; \
	done; \
	[ -z "$$failed" ] || { echo "fuzz: failed:$$failed"; exit 1; }

fuzz-ci:
	$(MAKE) fuzz FUZZ_SECONDS=4 FUZZ_SCRATCH=.build FUZZ_CONFIG=debug

clean:
	rm -rf .build .build-fuzz demo-out bench-out
