#!/usr/bin/env bash
# make test-slurm: the pipeline on a real one-node Slurm cluster (munged, slurmctld, slurmd
# started here by local-cluster.sh), checked against `vidx-pipeline run` on the same clips:
#
#   1. submit: the published index is byte-identical to the one `vidx-pipeline run` builds;
#      the broken clip is quarantined and the finalize job's exit status is 3; a second
#      submission while the first is in flight is refused with status 75;
#   2. one array task cancelled (scancel JOB_2 while it waits behind array_cap 1): the
#      finalize job resubmits that unit as a new array and the index is again the same bytes;
#   3. no rounds left: the unfinished unit is named in RUN.json and `slurm resubmit` runs it;
#   4. slurm.shard_parts 2: the finalize job submits the staged build (partition array,
#      shard array, publishing job) and the index is again the same bytes.
#
# Every wait is bounded; every daemon started is stopped by pid and the temporary state
# removed, also when a check fails.  Usage: test-slurm.sh BIN_DIR
set -euo pipefail

bin=$(cd "${1:?usage: test-slurm.sh BIN_DIR}" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/Pipelines/slurm"
tmp=$(mktemp -d /tmp/vidx-test-slurm.XXXXXX)
cluster="$tmp/cluster"
failed=0

cleanup() {
    "$here/local-cluster.sh" stop "$cluster" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
    echo "test-slurm: FAIL: $*" >&2
    for f in "$tmp"/*/index.work/slurm/logs/*.out; do
        [ -f "$f" ] && { echo "---- $f" >&2; tail -n 20 "$f" >&2; }
    done
    for f in "$cluster"/slurmctld.log "$cluster"/slurmd.log; do
        [ -f "$f" ] && { echo "---- $f (last 30 lines)" >&2; tail -n 30 "$f" >&2; }
    done
    exit 1
}

check() {  # DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then echo "test-slurm: ok: $what"; else fail "$what"; fi
}

# The submission's state field and exit status, from WORK/slurm/submission.json.
field() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1])).get(sys.argv[2]); print("" if v is None else v)' "$1" "$2"; }
rounds() { python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["rounds"]))' "$1"; }

wait_finished() {  # WORK SECONDS
    local sub="$1/slurm/submission.json"
    for _ in $(seq $(($2 * 2))); do
        if [ -f "$sub" ] && [ "$(field "$sub" state)" = finished ]; then return 0; fi
        sleep 0.5
    done
    squeue >&2 || true
    fail "the submission in $1 did not finish within $2 s"
}

# Submits into $tmp/NAME with CONFIG (array_cap 1), cancels array task 2 while it waits
# behind the cap, and waits for the submission to finish.
submit_cancel_wait() {  # NAME CONFIG
    mkdir -p "$tmp/$1"
    "$bin/vidx-pipeline" slurm submit --index "$tmp/$1/index" "${common[@]}" --config "$2" \
        >"$tmp/$1/submit.log" 2>&1 || { cat "$tmp/$1/submit.log" >&2; fail "slurm submit ($1)"; }
    local job
    job=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rounds"][0]["array_job"])' "$tmp/$1/index.work/slurm/submission.json")
    scancel "${job}_2" || fail "scancel ${job}_2"
    wait_finished "$tmp/$1/index.work" 300
}

# The index's bytes: CURRENT and every generation's files (not the lock files).
same_index() { diff -r -x '.*' "$1" "$2" >/dev/null; }

eval "$("$here/local-cluster.sh" start "$cluster")" || fail "the local cluster did not start"
echo "test-slurm: cluster up ($(sinfo -h -o '%N %c CPUs %t'))"

# Clips: three with sound, one without, one cut short (broken).
corpus="$tmp/corpus"
mkdir -p "$corpus/a" "$corpus/b"
clip() {  # PATH SOURCE SECONDS [audio]
    local args=(-f lavfi -i "$2=size=160x120:rate=10" -t "$3")
    [ "${4:-}" = audio ] && args+=(-f lavfi -i "sine=frequency=440:duration=$3")
    args+=(-c:v libx264 -preset veryfast -pix_fmt yuv420p)
    [ "${4:-}" = audio ] && args+=(-c:a aac -shortest)
    ffmpeg -hide_banner -loglevel error -nostdin -y "${args[@]}" "$1"
}
clip "$corpus/a/one.mp4" testsrc2 3 audio
clip "$corpus/a/two.mp4" mandelbrot 2
clip "$corpus/b/one.mp4" smptebars 2 audio
clip "$corpus/b/three.mp4" rgbtestsrc 2 audio
clip "$corpus/b/four.mp4" testsrc 2 audio
head -c 3000 "$corpus/a/one.mp4" >"$corpus/b/broken.mp4"

config="$tmp/config.json"
cat >"$config" <<'EOF'
{"unit_size": 2, "shards": 2,
 "slurm": {"cpus_per_task": 1, "memory_mb": 1024, "finalize_memory_mb": 1024, "array_cap": 2,
           "time_limit": "10:00", "finalize_time_limit": "10:00", "max_rounds": 2}}
EOF
common=(--input "$corpus" --bundle "$root/models/starter" --cnn "$root/models/efficientnet-lite0/weights.safetensors")

# The reference: the same pipeline without Slurm.
set +e
"$bin/vidx-pipeline" run --index "$tmp/ref/index" "${common[@]}" --config "$config" --jobs 2 >"$tmp/ref.log" 2>&1
status=$?
set -e
check "vidx-pipeline run gives 3 (the broken clip quarantined)" test "$status" = 3

# 1. Submit; a second submission in flight is refused.
mkdir -p "$tmp/one"
"$bin/vidx-pipeline" slurm submit --index "$tmp/one/index" "${common[@]}" --config "$config" --metrics-file "$tmp/one/metrics/vidx.prom" \
    >"$tmp/one/submit.log" 2>&1 || { cat "$tmp/one/submit.log" >&2; fail "slurm submit"; }
set +e
"$bin/vidx-pipeline" slurm submit --index "$tmp/one/index" "${common[@]}" --config "$config" >"$tmp/one/again.log" 2>&1
status=$?
set -e
check "a second submission while the first is in flight exits 75" test "$status" = 75
check "... and says so" grep -q "in flight" "$tmp/one/again.log"
wait_finished "$tmp/one/index.work" 300
check "the finalize job's exit status is 3" test "$(field "$tmp/one/index.work/slurm/submission.json" exit_status)" = 3
check "the published index is byte-identical to vidx-pipeline run's" same_index "$tmp/ref/index" "$tmp/one/index"
check "the broken clip is quarantined as corrupt" grep -q '"class":"corrupt".*"id":"b/broken.mp4"' "$tmp/one/index.work/state/quarantine.jsonl"
check "RUN.json says published_with_failures" grep -q '"result" : "published_with_failures"' "$tmp/one/index.work/RUN.json"
check "the metrics file was written" grep -q '^vidx_last_run_exit_status 3' "$tmp/one/metrics/vidx.prom"
check "one log per array task, named JOB_TASK" test "$(ls "$tmp/one/index.work/slurm/logs" | grep -cE '^[0-9]+_[0-9]+\.out$')" = 3
"$bin/vidx-pipeline" slurm status --work "$tmp/one/index.work" | grep -q "3/3 units done" || fail "slurm status"
echo "test-slurm: ok: slurm status reports 3/3 units done"

# 2. One task cancelled while it waits (array_cap 1): resubmitted by the finalize job.
sed 's/"array_cap": 2/"array_cap": 1/' "$config" >"$tmp/config-cap1.json"
submit_cancel_wait two "$tmp/config-cap1.json"
check "the cancelled unit was resubmitted (two rounds)" test "$(rounds "$tmp/two/index.work/slurm/submission.json")" = 2
check "the resubmitted array holds the cancelled index only" \
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["rounds"][1]; sys.exit(r["indices"] != "2")' "$tmp/two/index.work/slurm/submission.json"
validate() {  # FILE SCHEMA [lines]
    (cd "$root" && python3 -c 'import sys; sys.path[:0] = ["Tests/Reference", "Pipelines/models"]; import test_data as t
f = t.validate_json_lines if len(sys.argv) > 3 else t.validate_json
f(sys.argv[1], sys.argv[2])' "$@")
}
for w in "$tmp/one/index.work" "$tmp/two/index.work"; do
    check "$(basename "$(dirname "$w")"): submission.json meets its schema" validate "$w/slurm/submission.json" slurm-submission.schema.json
    check "$(basename "$(dirname "$w")"): RUN.json meets its schema" validate "$w/RUN.json" run-report.schema.json
done
check "after the resubmission the finalize job's exit status is 3" test "$(field "$tmp/two/index.work/slurm/submission.json" exit_status)" = 3
check "the index is again byte-identical to vidx-pipeline run's" same_index "$tmp/ref/index" "$tmp/two/index"

# 3. No rounds left (max_rounds 0): the cancelled unit is named in RUN.json by unit and array
#    index, the rest is published (exit 3); `slurm resubmit` then runs that unit alone.
sed 's/"max_rounds": 2/"max_rounds": 0/' "$tmp/config-cap1.json" >"$tmp/config-norounds.json"
submit_cancel_wait three "$tmp/config-norounds.json"
check "without rounds left the finalize job publishes the rest and exits 3" \
    test "$(field "$tmp/three/index.work/slurm/submission.json" exit_status)" = 3
check "RUN.json names the unfinished unit and its array index" \
    python3 -c 'import json,sys; u=json.load(open(sys.argv[1]))["units"]["unfinished"]; sys.exit(not (len(u) == 1 and u[0]["index"] == 2 and u[0]["name"]))' "$tmp/three/index.work/RUN.json"
"$bin/vidx-pipeline" slurm resubmit --work "$tmp/three/index.work" >"$tmp/three/resubmit.log" 2>&1 || { cat "$tmp/three/resubmit.log" >&2; fail "slurm resubmit"; }
check "slurm resubmit submits the one unfinished unit" grep -q -- "--array=2)" "$tmp/three/resubmit.log"
wait_finished "$tmp/three/index.work" 300
check "after slurm resubmit every unit is published: 5 live videos, and the index verifies" \
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(not (r["live"]["videos"] == 5 and not r["units"]["unfinished"]))' "$tmp/three/index.work/RUN.json"
"$bin/vidx-verify" "$tmp/three/index" >/dev/null || fail "vidx-verify after slurm resubmit"


# 4. The staged build: partition and shard array tasks, then the publishing job.
sed 's/"max_rounds": 2}/"max_rounds": 2, "shard_parts": 2}/' "$config" >"$tmp/config-staged.json"
grep -q '"shard_parts": 2' "$tmp/config-staged.json" || fail "could not write the staged configuration"
mkdir -p "$tmp/four"
"$bin/vidx-pipeline" slurm submit --index "$tmp/four/index" "${common[@]}" --config "$tmp/config-staged.json" \
    >"$tmp/four/submit.log" 2>&1 || { cat "$tmp/four/submit.log" >&2; fail "slurm submit (staged)"; }
wait_finished "$tmp/four/index.work" 300
sub4="$tmp/four/index.work/slurm/submission.json"
check "staged: the publishing job's exit status is 3" test "$(field "$sub4" exit_status)" = 3
check "staged: the index is byte-identical to vidx-pipeline run's" same_index "$tmp/ref/index" "$tmp/four/index"
check "staged: RUN.json says the shards came from the staged build" \
    python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["publication"].get("staged") is not True)' "$tmp/four/index.work/RUN.json"
check "staged: submission.json records the stage's jobs" \
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["stage"]; sys.exit(not (s["parts"] == 2 and s["shards"] == 2 and s["publish_job"]))' "$sub4"
check "staged: submission.json meets its schema" validate "$sub4" slurm-submission.schema.json
check "staged: RUN.json meets its schema" validate "$tmp/four/index.work/RUN.json" run-report.schema.json
check "staged: one log per partition task and per shard task" \
    test "$(ls "$tmp/four/index.work/slurm/logs" | grep -cE '^(partition|shard)-[0-9]+_[0-9]+\.out$')" = 4
check "staged: the stage directory is removed after publishing" test ! -e "$tmp/four/index.work/slurm/stage"

echo "test-slurm: all checks passed"
