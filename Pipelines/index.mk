# The indexing pipeline, driven by make (Documentation/Pipeline.md).
#
#   make -f Pipelines/index.mk index   INPUT=DIR_OR_LIST INDEX=DIR [WORK=DIR] [CONFIG=FILE] [BUNDLE=DIR] [JOBS=N]
#   make -f Pipelines/index.mk nightly INPUT=... INDEX=...     the day's uploads: append only
#   make -f Pipelines/index.mk rebuild INPUT=... INDEX=...     a fresh generation from every input
#   make -f Pipelines/index.mk compact|reshard SHARDS=N INDEX=...   without re-encoding
#   make -f Pipelines/index.mk slurm   INPUT=... INDEX=... [MODE=nightly]  the units on Slurm
#
# index, nightly and rebuild are one `vidx-pipeline run` each: lock, plan, the units (this
# directory's generated WORK/units.mk, one rule per unit, run with -k -j JOBS), publish.
# The steps can also be run one at a time: plan, units, publish (hold the lock yourself:
# vidx-pipeline locked --index DIR -- make ...).
# make's own exit status is 2 whenever the pipeline's is not 0; cron jobs that need the
# pipeline's statuses (0, 3, 1, 75, 2) call `vidx-pipeline run` directly (see README).
#
# Defaults: BIN is the source tree's release build (an installed layout passes BIN=PREFIX/bin),
# BUNDLE the starter bundle, CONFIG Pipelines/default.json, WORK=INDEX.work, JOBS=2,
# METRICS=WORK/metrics/vidx.prom. INPUT may name several directories and lists.

PIPELINE_DIR := $(dir $(abspath $(lastword $(MAKEFILE_LIST))))
BIN ?= $(PIPELINE_DIR)../.build/release
BUNDLE ?= $(PIPELINE_DIR)../models/starter
CONFIG ?= $(PIPELINE_DIR)default.json
WORK ?= $(INDEX).work
JOBS ?= 2
METRICS ?= $(WORK)/metrics/vidx.prom
DELETIONS ?= $(if $(filter index,$(MAKECMDGOALS)),--deletions,)
DELETIONS_FLAG = --deletions
SHARDS ?=

.PHONY: index nightly rebuild slurm plan units publish compact reshard check-args
.DELETE_ON_ERROR:

check-args:
	@test -n "$(INDEX)" || { echo "index.mk: give INDEX=DIR" >&2; exit 2; }

INPUT_FLAGS = $(foreach i,$(INPUT),--input $(i))

index nightly rebuild: check-args
	@test -n "$(INPUT)" || { echo "index.mk: give INPUT=DIR_OR_LIST" >&2; exit 2; }
	$(BIN)/vidx-pipeline run --mode $@ $(INPUT_FLAGS) --index $(INDEX) --work $(WORK) --bundle $(BUNDLE) \
	  --config $(CONFIG) --jobs $(JOBS) --metrics-file $(METRICS) $(if $(filter index,$@),$(DELETIONS),)

# The same run on Slurm: plan here, the units as a job array, a finalize job that publishes
# (Pipelines/slurm/README.md). MODE=index|nightly|rebuild (default index).
slurm: check-args
	@test -n "$(INPUT)" || { echo "index.mk: give INPUT=DIR_OR_LIST" >&2; exit 2; }
	$(BIN)/vidx-pipeline slurm submit --mode $(or $(MODE),index) $(INPUT_FLAGS) --index $(INDEX) --work $(WORK) \
	  --bundle $(BUNDLE) --config $(CONFIG) --metrics-file $(METRICS) $(if $(filter index,$(or $(MODE),index)),$(DELETIONS_FLAG),)

plan: check-args
	$(BIN)/vidx-plan --mode $(or $(MODE),index) $(INPUT_FLAGS) --index $(INDEX) --work $(WORK) --bundle $(BUNDLE) \
	  --config $(CONFIG) $(DELETIONS)

units: check-args
	$(MAKE) --no-print-directory -f $(WORK)/units.mk -k -j$(JOBS) units VIDX_PIPELINE=$(BIN)/vidx-pipeline

publish: check-args
	$(BIN)/vidx-pipeline publish --work $(WORK) --metrics-file $(METRICS)

compact: check-args
	$(BIN)/vidx-pipeline locked --index $(INDEX) -- $(BIN)/vidx-shard --index $(INDEX) --compact --verify

reshard: check-args
	@test -n "$(SHARDS)" || { echo "index.mk: give SHARDS=N" >&2; exit 2; }
	$(BIN)/vidx-pipeline locked --index $(INDEX) -- $(BIN)/vidx-shard --index $(INDEX) --compact --verify --shards $(SHARDS)
