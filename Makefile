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
               ffmpeg libopenblas-dev pkg-config time strace
PIP_PACKAGES = numpy jsonschema pytest

.PHONY: all setup build test demo models bench-decode bench-encode bench-search bench-extract fuzz fuzz-ci clean

all: build

# Idempotent: installs only what is missing (apt-get update first when it does).
setup:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "setup: Debian packages present"; fi
	@for p in $(PIP_PACKAGES); do \
	  $(PYTHON) -c "import $$p" 2>/dev/null || { echo "setup: pip install $$p"; $(PYTHON) -m pip install -q $$p; }; \
	done

build: setup
	$(SWIFT) build -c $(CONFIG) $(BUILD_FLAGS)

test: setup models
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build
	$(PYTHON) -m pytest -q Tests/Python

# The main job on an embedded default: three generated clips (one without sound) as a
# work unit through every stage with the starter bundle: extract, encode, shard, verify,
# then search the index by example. Starts from a clean demo-out/ every time.
DEMO = demo-out
demo: build models
	@rm -rf $(DEMO) && mkdir -p $(DEMO)/videos
	@ffmpeg -hide_banner -loglevel error -nostdin -y -f lavfi -i testsrc2=size=640x360:rate=25:duration=12 \
	  -f lavfi -i "sine=frequency=440:duration=12" -c:v libx264 -preset veryfast -pix_fmt yuv420p \
	  -c:a aac -shortest $(DEMO)/videos/pattern.mp4
	@ffmpeg -hide_banner -loglevel error -nostdin -y -f lavfi -i mandelbrot=size=640x360:rate=25 -t 10 \
	  -f lavfi -i "sine=frequency=1000:duration=10" -c:v libx264 -preset veryfast -pix_fmt yuv420p \
	  -c:a aac -shortest $(DEMO)/videos/zoom.mp4
	@ffmpeg -hide_banner -loglevel error -nostdin -y -f lavfi -i smptebars=size=640x360:rate=25:duration=8 \
	  -c:v libx264 -preset veryfast -pix_fmt yuv420p $(DEMO)/videos/bars.mp4
	@printf '%s\n' '{"id": "demo/pattern", "path": "videos/pattern.mp4"}' '{"id": "demo/zoom", "path": "videos/zoom.mp4"}' \
	  '{"id": "demo/bars", "path": "videos/bars.mp4"}' > $(DEMO)/unit-0000.jsonl
	@echo "== vidx-extract: decode each video once, run the appearance, audio and motion experts"
	$(BIN)/vidx-extract --bundle models/starter --unit $(DEMO)/unit-0000.jsonl --out $(DEMO)/unit-0000.features.safetensors
	@echo "== vidx-encode: HCQ's video transformer -> coarse and fine codes (starter bundle: untrained weights)"
	$(BIN)/vidx-encode --bundle models/starter --features $(DEMO)/unit-0000.features.safetensors --out $(DEMO)/unit-0000.codes.safetensors
	@echo "== vidx-shard: publish an index generation"
	$(BIN)/vidx-shard --index $(DEMO)/index --bundle models/starter --shards 2 $(DEMO)/unit-0000.codes.safetensors
	@echo "== vidx-verify"
	$(BIN)/vidx-verify $(DEMO)/index
	@echo "== vidx-search --like demo/zoom: the video itself ranks first"
	$(BIN)/vidx-search $(DEMO)/index --like demo/zoom --k 3
	@echo "== per-video timings in $(DEMO)/unit-0000.stats.json; the index in $(DEMO)/index"

# The starter model bundle (seeded, untrained weights shaped for the built-in experts).
models: setup
	$(PYTHON) Pipelines/models/make_starter.py models/starter
	$(PYTHON) Pipelines/models/convert_efficientnet.py --out models/efficientnet-lite0 --download-dir models/.downloads

bench-decode: build
	$(PYTHON) Pipelines/bench/bench_decode.py --vidx $(BIN)/vidx-decode --workdir bench-out

bench-encode: build
	$(PYTHON) Pipelines/bench/bench_encode.py --bin $(BIN) --workdir bench-out/encode

bench-search: build
	$(PYTHON) Pipelines/bench/bench_search.py --bin $(BIN) --workdir bench-out/search

bench-extract: build models
	$(PYTHON) Pipelines/bench/bench_extract.py --bin $(BIN) --workdir bench-out/extract

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
