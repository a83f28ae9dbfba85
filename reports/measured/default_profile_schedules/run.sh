#!/usr/bin/env bash
# `make reproduce` of the default profile (with the schedule study) on a fresh clone of HEAD,
# AVX2 kernels forced (no native bf16), an empty calibration cache, every output line stamped
# with the seconds since the start; then the report, tables, figures, metrics and the schedule
# study's trial tables are copied here. Run from the repository root:
#   bash reports/measured/default_profile_schedules/run.sh [CLONE_DIR]
set -euo pipefail
here=$(pwd)/reports/measured/default_profile_schedules
clone=${1:-/tmp/fresh-clone}
rm -rf "$clone" && git clone -q "$(pwd)" "$clone"
cache=$(mktemp -d)
commit=$(git -C "$clone" rev-parse --short HEAD)
log="$here/make_reproduce_avx2_$commit.log"
{
  echo "\$ git clone <this repository> && cd <it> && make reproduce   # commit $commit, $(date -u)"
  echo "environment: ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 IRM_PIPELINE_CACHE=<empty directory>"
  lscpu | grep -E "^CPU\(s\)|Model name|^Flags" | cut -c1-300
} > "$log"
start=$(date +%s.%N)
( cd "$clone" && ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
    IRM_PIPELINE_CACHE="$cache" make reproduce 2>&1; echo "make reproduce: exit $?" ) \
  | python3 -u -c '
import sys, time
t0 = float(sys.argv[1])
for line in sys.stdin:
    sys.stdout.write(f"[{time.time() - t0:6.1f}s] {line}")' "$start" >> "$log"
end=$(date +%s.%N)
echo "wall $(python3 -c "print(f'{$end - $start:.1f}')") s" >> "$log"
rm -rf "$here/report" && mkdir -p "$here/report"
cp -r "$clone/reports/report.md" "$clone/reports/report.html" "$clone/reports/tables" \
  "$clone/reports/figures" "$clone/reports/metrics.json" "$here/report/"
mkdir -p "$here/schedules"
for d in "$clone"/results/schedules/search/* "$clone"/results/schedules/landscape/* \
         "$clone"/results/schedules/power_sweep/*; do
  name=$(basename "$(dirname "$d")")-$(basename "$d")
  cp "$d/trials.csv" "$here/schedules/$name-trials.csv"
  cp "$d/best.json" "$here/schedules/$name-best.json"
  [ -f "$d/shared_prefix.json" ] && cp "$d/shared_prefix.json" "$here/schedules/$name-shared_prefix.json"
done
cp "$clone"/results/schedules/evaluate/*.json "$here/schedules/" 2>/dev/null || true
echo "done: $log"
