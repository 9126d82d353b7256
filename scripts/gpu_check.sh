#!/usr/bin/env bash
# The GPU check of issue 26, in one command that fits a 9-minute slot on one GPU:
#
#   (a) training throughput of `base` and `big` in bf16 on synthetic WMT-length batches of
#       ~25k tokens, ours against transformers' MarianMTModel of the same shape: target
#       tokens/s, TFLOP/s and MFU (scripts/bench_train.py --synthetic), with a torch.profiler
#       top-15 table of ours;
#   (b) configs/multi30k_gpu.yaml trained for 5 minutes, then beam-4 sacreBLEU of its
#       last.ckpt on Multi30k test2016;
#   (c) GPU decoding of test2016 with that checkpoint: ours against transformers and
#       CTranslate2 on the same exported weights (scripts/bench_decode.py --device cuda).
#
#   bash scripts/gpu_check.sh RESULTS_DIR            # on a machine with a CUDA GPU
#   bash scripts/gpu_check.sh RESULTS_DIR --dry-run  # every step on the CPU, tiny shapes,
#                                                    # a few steps, < 3 min (make test runs it)
#
# Everything it writes is under RESULTS_DIR, at most 8 files and no sub-folder (what the
# device tool brings back): summary.md (versions, device, each step's status, time and
# output), run.log (everything), train_base.json, train_big.json, fit.log, bleu.json,
# decode.json. Training runs and exports go to a scratch folder ($GPU_CHECK_WORK, default a
# temporary one). A step that fails is reported and the next one still runs; the exit status
# is non-zero if any failed.
#
# Inputs: the Multi30k corpus under $TRANSFORMER_MT_DATA (default: .gpu_carry/data when it
# exists, else ../shared/data); Python is $PYTHON (default python3), run on this checkout's
# src/ (no install needed). Python packages that the GPU machine lacks (jsonargparse for the
# Lightning CLI, ctranslate2) are installed from wheels in .gpu_carry/whl when that folder
# exists. scripts/gpu_carry.sh fills .gpu_carry on the development machine; then, with the
# device tool: run(command="bash scripts/gpu_check.sh $OUT", carry=[".gpu_carry"],
# timeout_s=600). Copy the figures into docs/benchmarks.md with the device name and date.
set -uo pipefail

if [[ $# -lt 1 || $1 == -* ]]; then
    echo "usage: bash scripts/gpu_check.sh RESULTS_DIR [--dry-run]" >&2
    exit 2
fi
OUT=$1
DRY=0
[[ ${2:-} == --dry-run ]] && DRY=1
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=${GPU_CHECK_WORK:-$(mktemp -d)}
mkdir -p "$WORK"
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if [[ -z ${TRANSFORMER_MT_DATA:-} ]]; then
    if [[ -d .gpu_carry/data ]]; then TRANSFORMER_MT_DATA=$PWD/.gpu_carry/data
    else TRANSFORMER_MT_DATA=$PWD/../shared/data; fi
fi
export TRANSFORMER_MT_DATA
if [[ $DRY == 0 ]] && compgen -G ".gpu_carry/whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$WORK/site" .gpu_carry/whl/*.whl && export PYTHONPATH="$PYTHONPATH:$WORK/site"
fi

SUMMARY=$OUT/summary.md
LOG=$OUT/run.log
FAILED=0
: >"$LOG"
{
    echo "# GPU check ($([[ $DRY == 1 ]] && echo "DRY RUN on the CPU: no figure here is a GPU figure" || echo "issue 26"))"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "- device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
    echo "- $("$PY" -c 'import platform, torch; print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}, GPU available: {torch.cuda.is_available()}")' 2>&1)"
    echo "- $("$PY" -c '
import importlib
for m in ("transformers", "ctranslate2", "lightning", "jsonargparse", "sacrebleu"):
    try:
        print(f"{m} {importlib.import_module(m).__version__}", end="; ")
    except Exception as exc:
        print(f"{m} missing ({type(exc).__name__})", end="; ")
' 2>&1)"
    echo "- corpus: $TRANSFORMER_MT_DATA/multi30k"
} >"$SUMMARY"

# step NAME TIMEOUT_S CMD...: run CMD with a time limit, its output to run.log and summary.md.
step() {
    local name=$1 limit=$2 start rc
    shift 2
    start=$(date +%s)
    echo "=== $name: $*" >>"$LOG"
    timeout --kill-after=10 "$limit" "$@" >"$WORK/step.out" 2>&1
    rc=$?
    cat "$WORK/step.out" >>"$LOG"
    if [[ $rc == 0 ]]; then status=ok; else status="FAILED (exit $rc$([[ $rc == 124 ]] && echo ", over its ${limit} s"))"; FAILED=1; fi
    {
        echo
        echo "## $name: $status, $(( $(date +%s) - start )) s"
        echo
        echo '```'
        echo "\$ $*"
        tail -n 60 "$WORK/step.out"
        echo '```'
    } >>"$SUMMARY"
    echo "gpu_check: $name: $status" >&2
    return $rc
}

DATA=$TRANSFORMER_MT_DATA/multi30k
RUN=$WORK/multi30k_gpu
if [[ $DRY == 1 ]]; then
    DEVICE=cpu
    TRAIN=(--device cpu --precision bf16-mixed --vocab-size 1000 --max-tokens 600 --steps 1
           --warmup 1 --threads 2)
    PRESETS=(base big)  # both slots run the tiny preset
    FIT=(--trainer.accelerator cpu --trainer.precision 32-true --trainer.max_time null
         --trainer.max_steps 4 --trainer.val_check_interval 4 --trainer.limit_val_batches 2
         --model.preset tiny --model.d_model 32 --model.n_heads 2 --model.d_ff 64
         --model.n_encoder_layers 1 --model.n_decoder_layers 1 --model.val_bleu_sentences 8
         --data.vocab_size 600 --data.max_tokens 1024 --data.num_workers 0)
    TEST_LINES=40
    DECODE=(--device cpu --limit 16 --repeats 1 --beam 4
            --systems ours,transformers,ct2-float32,ct2-int8)
    LIMITS=(120 120 300 120 120)
else
    DEVICE=cuda
    TRAIN=(--device cuda --precision bf16-mixed --max-tokens 25000 --steps 10 --warmup 3)
    PRESETS=(base big)
    FIT=(--trainer.max_time 00:00:05:00)
    TEST_LINES=0
    DECODE=(--device cuda --repeats 1 --beam 4
            --systems ours,transformers,ct2-float32,ct2-bfloat16,ct2-int8)
    LIMITS=(60 65 345 35 45)  # 550 s in all: the 9-minute slot
fi

# (a) training throughput
for i in 0 1; do
    preset=${PRESETS[$i]}
    [[ $DRY == 1 ]] && size=tiny || size=$preset
    step "train_$preset" "${LIMITS[$i]}" "$PY" scripts/bench_train.py "${TRAIN[@]}" \
        --preset "$size" --synthetic --systems ours,transformers --profile-top 15 \
        --json "$OUT/train_$preset.json"
done

# (b) Multi30k for 5 minutes, then beam-4 test2016 sacreBLEU
if [[ $TEST_LINES -gt 0 ]]; then  # the dry run translates the first lines only
    xz -dc "$DATA/test2016.en.xz" | head -n "$TEST_LINES" >"$WORK/test.en"
    xz -dc "$DATA/test2016.de.xz" | head -n "$TEST_LINES" >"$WORK/test.de"
else
    xz -dc "$DATA/test2016.en.xz" >"$WORK/test.en"
    xz -dc "$DATA/test2016.de.xz" >"$WORK/test.de"
fi
step fit "${LIMITS[2]}" "$PY" -m transformer_mt.commands.main fit \
    --config configs/multi30k_gpu.yaml "${FIT[@]}" --trainer.enable_progress_bar false --trainer.default_root_dir "$RUN" \
    --trainer.logger.init_args.save_dir "$RUN" --checkpoint.dirpath "$RUN/checkpoints" \
    --data.cache_dir "$WORK/cache"
cp "$WORK/step.out" "$OUT/fit.log"
CKPT=$RUN/checkpoints/last.ckpt
"$PY" -c 'import sys; from transformer_mt.checkpoint import load_checkpoint_dict as load
print(f"last.ckpt: step {load(sys.argv[1]).get('"'global_step'"')}")' "$CKPT" 2>&1 \
    | tee -a "$OUT/fit.log" | sed 's/^/- fit: /' >>"$SUMMARY"
step bleu "${LIMITS[3]}" bash -c 'set -e
    "$1" -m transformer_mt.commands.main translate --checkpoint "$2" --input "$3/test.en" \
        --output "$3/test.hyp" --beam-size 4 --device "$4" --quiet
    "$1" -m transformer_mt.commands.main evaluate --hyp "$3/test.hyp" --ref "$3/test.de" --json
' _ "$PY" "$CKPT" "$WORK" "$DEVICE" && sed -n '/^{/,$p' "$WORK/step.out" >"$OUT/bleu.json"

# (c) decoding test2016 with that checkpoint: ours, transformers, CTranslate2
step decode "${LIMITS[4]}" "$PY" scripts/bench_decode.py --checkpoint "$CKPT" "${DECODE[@]}" \
    --source "$WORK/test.en" --reference "$WORK/test.de" --export-dir "$WORK/exports" \
    --json "$OUT/decode.json"

echo >>"$SUMMARY"
echo "Finished $(date -u '+%Y-%m-%d %H:%M UTC'); $([[ $FAILED == 0 ]] && echo 'every step passed' || echo 'SOME STEPS FAILED (see run.log)')." >>"$SUMMARY"
[[ -z ${GPU_CHECK_WORK:-} ]] && rm -rf "$WORK"
exit $FAILED
