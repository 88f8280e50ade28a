#!/usr/bin/env bash
# make demo: the pipeline on generated clips, as cron and data engineers run it.
#   Pipelines/demo.sh BIN_DIR OUT_DIR
# 1. six varied clips (lengths 4-12 s, with and without sound, one file cut short) indexed
#    with `vidx-pipeline run --mode index` (what `make index` runs): exit status 3, the
#    broken file quarantined; the index verified and searched by example;
# 2. a nightly run: two new clips and one changed, appended as a new generation; the
#    changed video's old entry is superseded (gone from the results).
# Exits 0 when everything behaved as documented, 1 otherwise.
set -euo pipefail
BIN=$1
OUT=$2
BUNDLE=${BUNDLE:-models/starter}
rm -rf "$OUT"
mkdir -p "$OUT/uploads/day1/cam" "$OUT/uploads/day1/phone" "$OUT/uploads/day2"
clip() {  # clip PATH SOURCE SECONDS [AUDIO_HZ]
  local inputs=(-f lavfi -i "$2=size=480x270:rate=25" -t "$3") codecs=(-c:v libx264 -preset veryfast -pix_fmt yuv420p)
  if [ -n "${4:-}" ]; then
    inputs+=(-f lavfi -i "sine=frequency=$4:duration=$3")
    codecs+=(-c:a aac -shortest)
  fi
  ffmpeg -hide_banner -loglevel error -nostdin -y "${inputs[@]}" "${codecs[@]}" "$1"
}
fail() { echo "demo: FAILED: $*" >&2; exit 1; }
# pipeline MODE INPUT: one vidx-pipeline run on the demo's index; its exit status in $status.
pipeline() {
  set +e
  "$BIN/vidx-pipeline" run --mode "$1" --input "$2" --index "$OUT/index" --work "$OUT/work" \
    --bundle "$BUNDLE" --config Pipelines/demo.json --jobs 2 --metrics-file "$OUT/metrics/vidx.prom"
  status=$?
  set -e
}

echo "== generating clips in $OUT/uploads"
clip "$OUT/uploads/day1/cam/pattern.mp4" testsrc2 12 440
clip "$OUT/uploads/day1/cam/zoom.mp4" mandelbrot 10 1000
clip "$OUT/uploads/day1/phone/bars.mp4" smptebars 8
clip "$OUT/uploads/day1/phone/life.mp4" life 6 220
clip "$OUT/uploads/day1/cam/cells.mp4" cellauto 4
head -c 4096 "$OUT/uploads/day1/cam/zoom.mp4" > "$OUT/uploads/day1/phone/broken.mp4"

echo "== vidx-pipeline run --mode index: plan, extract + encode per unit (make -j 2), publish"
pipeline index "$OUT/uploads/day1"
echo "== the pipeline's exit status: $status (3: published, with quarantined videos)"
[ "$status" = 3 ] || fail "expected exit status 3, got $status"
"$BIN/vidx-pipeline" quarantine list --work "$OUT/work" --json | grep -q '"id":"phone/broken.mp4"' \
  || fail "phone/broken.mp4 is not quarantined"
echo "== quarantined:"
"$BIN/vidx-pipeline" quarantine list --work "$OUT/work"
echo "== vidx-verify"
"$BIN/vidx-verify" "$OUT/index"
echo "== vidx-search --like cam/zoom.mp4: the video itself ranks first"
"$BIN/vidx-search" "$OUT/index" --like cam/zoom.mp4 --k 3 | tee "$OUT/search-1.jsonl"
head -n 1 "$OUT/search-1.jsonl" | grep -q '"external_id":"cam/zoom.mp4"' || fail "cam/zoom.mp4 is not its own best match"

echo "== nightly: two new uploads and a changed one (phone/bars.mp4 re-uploaded with new content)"
clip "$OUT/uploads/day2/new-1.mp4" rgbtestsrc 5 330
clip "$OUT/uploads/day2/new-2.mp4" yuvtestsrc 7
old_bars=$("$BIN/vidx-search" "$OUT/index" --like phone/bars.mp4 --k 1)
clip "$OUT/uploads/day1/phone/bars.mp4" mandelbrot 9 880
printf '%s\n' "{\"id\": \"day2/new-1.mp4\", \"path\": \"day2/new-1.mp4\"}" \
  "{\"id\": \"day2/new-2.mp4\", \"path\": \"day2/new-2.mp4\"}" \
  "{\"id\": \"phone/bars.mp4\", \"path\": \"day1/phone/bars.mp4\"}" > "$OUT/uploads/day2.jsonl"
pipeline nightly "$OUT/uploads/day2.jsonl"
echo "== the nightly run's exit status: $status (0: all indexed)"
[ "$status" = 0 ] || fail "expected exit status 0, got $status"
[ "$(cat "$OUT/index/CURRENT")" = g000002 ] || fail "the nightly run did not publish g000002"
"$BIN/vidx-verify" "$OUT/index"
echo "== vidx-search --like phone/bars.mp4: its new content, one entry (the old one is superseded)"
"$BIN/vidx-search" "$OUT/index" --like phone/bars.mp4 --k 3 | tee "$OUT/search-2.jsonl"
[ "$(grep -c '"external_id":"phone/bars.mp4"' "$OUT/search-2.jsonl")" = 1 ] || fail "phone/bars.mp4 appears more than once"
echo "   before the nightly run: $old_bars"
echo "== a second nightly run over the same uploads changes nothing"
pipeline nightly "$OUT/uploads/day2.jsonl"
[ "$status" = 0 ] || fail "expected exit status 0 from the second nightly run, got $status"
[ "$(cat "$OUT/index/CURRENT")" = g000002 ] || fail "a second nightly run published again"
echo "== run report: $OUT/work/RUN.json (every run: $OUT/work/runs/); metrics: $OUT/metrics/vidx.prom"
echo "demo: everything behaved as documented"
