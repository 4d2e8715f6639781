#!/usr/bin/env bash
# One command for the first machine with a GPU: what works on CUDA, in at most 9 minutes on one H100,
# from the project root, with no network (models are random or the tiny test BERT; data are the GLUE
# fixtures in tests/data/glue). Each phase has a time cap; a phase that fails or runs out of time is
# recorded and the next one runs. Results: OUT/summary.md (one row per phase), OUT/<phase>.json and
# OUT/<phase>.log.
#
#   benchmarks/gpu_check.sh OUT            # the GPU run
#   benchmarks/gpu_check.sh OUT --small    # tiny sizes: the CPU test mode (tests/test_gpu_check.py)
#
# Phases (cap in seconds; 530 in all): doctor (20), assets (30), equivalence (90: padded vs padding-free
# logits and gradients of tiny, MiniLM- and bert-base-shaped random BERTs in fp32 and bf16, the attention
# kernel, host syncs, bitwise repeatability), speed (110: benchmarks/finetune_speed.py, bert-base shape,
# HF Trainer vs bertlottery padding-free) and speed_padded (45: the padded path with dynamic padding),
# sharing (90: 1, 2 and 4 jobs per GPU through with-gpu), workflow (85: the tiny workflow on the GPU),
# tests (60: the tests whose commands put models on the device; pytest starts slowly on a busy machine).
# --small triples every cap: there the caps guard against a hang, not a slow GPU (the CPU test shares its
# machine with other tests).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
    echo "usage: benchmarks/gpu_check.sh OUT_DIR [--small]" >&2
    exit 2
fi
out=$(mkdir -p "$1" && cd "$1" && pwd)
small=${2:-}
cap_scale=1
[ -n "$small" ] && cap_scale=3
: > "$out/status.tsv"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

phase() {  # phase NAME CAP_SECONDS COMMAND...: run, log, record status and seconds
    local name=$1 cap=$(( $2 * cap_scale )) start rc status
    shift 2
    start=$(date +%s)
    timeout --kill-after=10 "$cap" "$@" > "$out/$name.log" 2>&1
    rc=$?
    case $rc in
        0) status=ok ;;
        124|137) status="timed out after ${cap} s" ;;
        *) status="failed (exit $rc)" ;;
    esac
    printf '%s\t%s\t%s\n' "$name" "$status" "$(( $(date +%s) - start ))" >> "$out/status.tsv"
    echo "gpu_check: $name: $status" >&2
}

model="$out/tiny-model"
glue=tests/data/glue
phase doctor 20 python -m bertlottery doctor
phase assets 30 python benchmarks/gpu_check.py assets "$out"
phase equivalence 90 python benchmarks/gpu_check.py equivalence "$out" $small
if [ -n "$small" ]; then
    speed=(--quick --model "$model" --train-examples 40 --dev-examples 16)
    targets=(results/finetune/SST-2/seed42/metrics.json)
    overrides=("tasks=[SST-2]" "seeds=[42]")
    tests=(tests/test_runtime.py tests/modeling/test_precision.py)
else
    speed=(--model "$model" --random-init-config bert-base --epochs 3 --repeats 1)
    targets=()
    overrides=()
    tests=(tests/test_runtime.py tests/test_doctor.py tests/modeling/test_precision.py tests/train/test_evaluation_cli.py)
fi
phase speed 110 python benchmarks/finetune_speed.py "${speed[@]}" --glue-dir "$glue" --task MRPC \
    --no-subnetwork --output "$out/speed.json" --markdown "$out/speed.md" --work-dir "$out/speed-work"
phase speed_padded 45 python benchmarks/finetune_speed.py "${speed[@]}" --glue-dir "$glue" --task MRPC \
    --no-subnetwork --training '{"padding_free": false}' --output "$out/speed_padded.json"
phase sharing 90 python benchmarks/gpu_check.py sharing "$out" $small
phase workflow 85 python -m snakemake "${targets[@]}" --snakefile "$PWD/Snakefile" --directory "$out/workflow" \
    --cores "$(nproc)" --resources gpu=1 --configfile tests/data/tiny.yaml \
    --config "model=$model" "glue_dir=$PWD/$glue" "${overrides[@]}"
phase tests 60 python -m pytest -q -x -n 0 -p no:cacheprovider -m "not slow and not slurm" "${tests[@]}"
python benchmarks/gpu_check.py summary "$out"
