#!/usr/bin/env bash
# Fill .gpu_carry/ (git-ignored through .git/info/exclude) with what scripts/gpu_check.sh needs
# on the GPU machine and that machine lacks: the Multi30k corpus (it cannot reach
# ../shared/data) and wheels of the Python packages its image does not hold (jsonargparse for
# the Lightning CLI, with its two dependencies, and ctranslate2), for its Python 3.12 on x86-64.
# About 40 MB, within the 64 MiB the device tool carries. Run on the development machine,
# from the repository root, before the device call:
#
#   bash scripts/gpu_carry.sh
#   device run: command="bash scripts/gpu_check.sh $OUT", carry=[".gpu_carry"], timeout_s=600
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DATA=${TRANSFORMER_MT_DATA:-../shared/data}
EXCLUDE=$(git rev-parse --git-path info/exclude)
grep -qx '/.gpu_carry/' "$EXCLUDE" 2>/dev/null || echo '/.gpu_carry/' >>"$EXCLUDE"
rm -rf .gpu_carry
mkdir -p .gpu_carry/data .gpu_carry/whl
cp -r "$DATA/multi30k" .gpu_carry/data/
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .gpu_carry/whl \
    jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0 ctranslate2==4.8.5
du -sh .gpu_carry
