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
               ffmpeg libopenblas-dev pkg-config time
PIP_PACKAGES = numpy jsonschema pytest

.PHONY: all setup build test demo models bench-decode bench-encode bench-search fuzz-shard clean

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

# The main job on an embedded default: generate a sample clip, sample it, show it.
demo: build
	@mkdir -p demo-out
	@ffmpeg -hide_banner -loglevel error -y \
	  -f lavfi -i testsrc2=size=640x360:rate=25:duration=12 \
	  -f lavfi -i "sine=frequency=440:duration=12" \
	  -c:v libx264 -preset veryfast -pix_fmt yuv420p -c:a aac -shortest demo-out/sample.mp4
	@echo "== vidx-decode --sample every:2 --audio --out demo-out/frames demo-out/sample.mp4"
	@$(BIN)/vidx-decode --sample every:2 --audio --out demo-out/frames demo-out/sample.mp4
	@echo "== the sampled frames, as the models will see them:"
	@ls demo-out/frames/sample.mp4

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

# Fuzz the shard reader (libFuzzer + AddressSanitizer), bounded to 60 s. Built with plain
# swiftc from the reader's four files (no SwiftPM); seeds from Fuzz/make_seeds.py. A crash
# fails the target and leaves its input in .build-fuzz/crash-*.
SWIFTC ?= swiftc
FUZZ_DIR = .build-fuzz
fuzz-shard:
	@mkdir -p $(FUZZ_DIR)/corpus
	$(SWIFTC) -sanitize=fuzzer,address -parse-as-library -O -module-name ShardReaderFuzz -use-ld=lld \
	  Fuzz/ShardReaderFuzz/main.swift Sources/VidxIndex/ShardFormat.swift Sources/VidxIndex/CRC32C.swift \
	  Sources/VidxIndex/ShardError.swift Sources/VidxIndex/Shard+Read.swift -o $(FUZZ_DIR)/shard-fuzz
	$(PYTHON) Fuzz/make_seeds.py $(FUZZ_DIR)/corpus
	$(FUZZ_DIR)/shard-fuzz -max_total_time=60 -timeout=10 -rss_limit_mb=2048 -dict=Fuzz/shard.dict \
	  -artifact_prefix=$(FUZZ_DIR)/ $(FUZZ_DIR)/corpus

clean:
	rm -rf .build demo-out bench-out
