#!/bin/bash
# Wall time of the digits studies in two ganjax source trees, back to back, each compiling everything.
#
#     benchmarks/study_wall_time.sh BEFORE_TREE AFTER_TREE [OUT_DIR]
#
# e.g. `git worktree add /work/before_engine 2e7391e; benchmarks/study_wall_time.sh /work/before_engine .`
# Each run has the tree as its working directory, so `python -m ganjax.experiment` imports that
# tree's ganjax; GANJAX_COMPILATION_CACHE=off. Prints one line per run: wall seconds (date around
# the command) and the load average after it. The workdirs keep report.json for comparing the
# strategy entries. Run it on a quiet machine: two heavy jobs on 2 cores spoil the timings.
set -u
BEFORE=$(cd "$1" && pwd); AFTER=$(cd "$2" && pwd); OUT=${3:-/tmp/ganjax_study_wall_time}
export GANJAX_COMPILATION_CACHE=off
unset PYTHONPATH
mkdir -p "$OUT"
for study in lt semi; do
  for version in before after; do
    if [ $version = before ]; then dir=$BEFORE; else dir=$AFTER; fi
    rm -rf "$OUT/${version}_$study"
    cd "$dir"
    start=$(date +%s.%N)
    python -m ganjax.experiment --config configs/digits_$study.py --workdir "$OUT/${version}_$study" \
      > "$OUT/${version}_$study.log" 2>&1
    rc=$?
    end=$(date +%s.%N)
    echo "$version digits_$study rc=$rc wall_s=$(echo "$end - $start" | bc) load=$(cut -d' ' -f1-3 /proc/loadavg)"
  done
done
