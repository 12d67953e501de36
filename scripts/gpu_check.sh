#!/usr/bin/env bash
# First-GPU check of the TensorRT path, for one NVIDIA GPU with `pip install 'resnext-deploy[tensorrt]'`
# (about 5-8 minutes): FP32, FP16 and INT8 (tensorrt recipe) engines of resnext50d_32x4d with random weights,
# made through the CLI; parity against ONNX Runtime FP32 and batch 1 / 8 latency (from each export's
# verification); the engine inspector's per-layer precisions (which convolutions really run INT8);
# a bundle built and run on TensorRT; trtexec's GPU compute time when trtexec is on PATH; the `gpu` tests;
# and a summary table (OUT/summary.md). Each step has its own timeout, and a failed step does not stop the others.
#
#   scripts/gpu_check.sh [OUT]          (default out/gpu-check; or `make gpu-check`)
#   env: PYTHON (python3), MODEL (resnext50d_32x4d), CALIB_SIZE (64), STEPS (all: a space-separated subset of
#        environment samples fp32 fp16 int8 layers bundle trtexec gpu-tests)
# Exit: 0 every step passed, 1 a step failed or timed out, 2 TensorRT is unavailable here (its steps were skipped).
set -u -o pipefail

OUT=${1:-out/gpu-check}
PY=${PYTHON:-python3}
MODEL=${MODEL:-resnext50d_32x4d}
CALIB_SIZE=${CALIB_SIZE:-64}
STEPS=${STEPS:-environment samples fp32 fp16 int8 layers bundle trtexec gpu-tests}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HELPER="$HERE/gpu_check_helper.py"
TRT_STATUS="not checked"
FAILED=0

mkdir -p "$OUT"
: >"$OUT/steps.tsv"
export HF_HUB_OFFLINE=1  # random weights: nothing to download

selected() { [[ " $STEPS " == *" $1 "* ]]; }

record() {  # step status seconds note
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4//$'\t'/ }" >>"$OUT/steps.tsv"
    printf '%-12s %-34s %5ss  %s\n' "$1" "$2" "$3" "$4"
}

# run_step NAME TIMEOUT_S COMMAND...: run with its own timeout, log to OUT/NAME.log, record the outcome.
run_step() {
    local name=$1 limit=$2 start rc status
    shift 2
    start=$(date +%s)
    # bash -c: a step may be one of the exported functions below; timeout stops its whole process group
    timeout --kill-after=15 "$limit" bash -c '"$@"' bash "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    case $rc in
        0) status=ok ;;
        124 | 137) status="TIMEOUT after ${limit}s" ;;
        1) status="FAILED (exit 1: a gate failed)" ;;
        2) status="FAILED (exit 2: bad input or unavailable)" ;;
        *) status="FAILED (exit $rc)" ;;
    esac
    [[ $rc -eq 0 ]] || FAILED=1
    record "$name" "$status" "$(($(date +%s) - start))" "$(grep -v '^\s*$' "$OUT/$name.log" | tail -n 1 | cut -c1-160)"
    if [[ $rc -ne 0 ]]; then
        sed 's/^/    | /' "$OUT/$name.log" | tail -n 12
    fi
    return "$rc"
}

needs_trt() {  # NAME: true when TensorRT can run here, else record the step as unavailable
    if [[ $TRT_STATUS == tensorrt:* ]]; then
        return 0
    fi
    record "$1" "unavailable" 0 "${TRT_STATUS#unavailable: }"
    return 1
}


# --- the steps (exported so that run_step can run each under its own timeout) ----------------------------------
env_info() {
    "$PY" -m resnext_deploy --version
    if command -v nvidia-smi >/dev/null; then nvidia-smi -L; else echo "nvidia-smi: not on PATH"; fi
    "$PY" -c "import polygraphy; print('polygraphy', polygraphy.__version__)"
    echo "$TRT_STATUS"
}

write_samples() {
    "$PY" -c "
import sys
from pathlib import Path
from resnext_deploy.data.samples import write_sample_images
root = Path(sys.argv[1])
write_sample_images(root / 'train', per_class=8, seed=0)
write_sample_images(root / 'val', per_class=8, seed=1)
print('64 calibration and 64 evaluation images in', root)" "$OUT/samples"
}

export_engine() {  # PRECISION MIN_COSINE [extra export options...]
    local precision=$1 cosine=$2
    shift 2
    "$PY" -m resnext_deploy export "$MODEL" --weights random --precision "$precision" --backend tensorrt \
        --output "$OUT/$precision" --force --min-batch 1 --opt-batch 8 --max-batch 8 --timing-cache "$OUT/timing.cache" \
        --eval-data "$OUT/samples" --eval-size 64 --batch-sizes 1,8 --duration 1 --warmup-ms 500 \
        --max-top1-drop 100 --min-cosine "$cosine" "$@"
}

int8_artifact_on_cpu() {  # the CPU half of the edge flow; TensorRT then refuses cleanly (exit 2: not available)
    "$PY" -m resnext_deploy export "$MODEL" --weights random --precision int8 --backend onnxruntime \
        --targets onnxruntime,tensorrt --output "$OUT/int8" --force --no-engine --calib-data "$OUT/samples" \
        --calib-size "$CALIB_SIZE" --cache-dir "$OUT/cache" || return
    "$PY" -m resnext_deploy verify "$OUT/int8" --backend tensorrt --no-latency --eval-size 8
    [[ $? -eq 2 ]] && echo "TensorRT-recipe artifact made: $OUT/int8/model.int8.tensorrt.onnx; verify on TensorRT: unavailable here (exit 2)"
}

inspect_engines() {  # which convolutions really run INT8 (and FP16), per TensorRT's engine inspector
    local precision engine rc=0
    for precision in fp16 int8; do
        engine="$OUT/$precision/model.$precision.engine"
        [[ -f $engine ]] || { echo "$engine: missing (its export step failed)"; rc=1; continue; }
        if [[ $precision == int8 ]]; then
            "$PY" "$HELPER" layers "$engine" --json "$OUT/$precision/layers.json" --expect-int8 || rc=1
        else
            "$PY" "$HELPER" layers "$engine" --json "$OUT/$precision/layers.json" || rc=1
        fi
    done
    return "$rc"
}

bundle_flow() {
    "$PY" -m resnext_deploy package "$OUT/int8" --output "$OUT/int8.tar.gz" --force &&
        "$PY" -m resnext_deploy build "$OUT/int8.tar.gz" --backend tensorrt &&
        "$PY" -m resnext_deploy predict "$OUT/int8.tar.gz" "$(find "$OUT/samples/val" -name '*.JPEG' | sort | head -n 1)" \
            --backend tensorrt --top 3
}

trtexec_runs() {  # trtexec's GPU compute time of the same engines, next to our end-to-end figures
    local precision batch engine rc=0
    for precision in fp32 fp16 int8; do
        engine="$OUT/$precision/model.$precision.engine"
        [[ -f $engine ]] || continue
        for batch in 1 8; do
            trtexec --loadEngine="$engine" --shapes="$("$PY" "$HELPER" shape "$engine" "$batch")" --duration=3 \
                >"$OUT/trtexec-$precision-b$batch.log" 2>&1 || rc=1
            echo "$precision batch $batch: GPU compute median $("$PY" "$HELPER" trtexec-median "$OUT/trtexec-$precision-b$batch.log") ms"
        done
    done
    return "$rc"
}

export OUT PY MODEL CALIB_SIZE HELPER TRT_STATUS
export -f env_info write_samples export_engine int8_artifact_on_cpu inspect_engines bundle_flow trtexec_runs

echo "GPU check of the TensorRT path: $MODEL, random weights, results in $OUT"
TRT_STATUS=$("$PY" "$HELPER" preflight 2>/dev/null || true)
[[ -n $TRT_STATUS ]] || TRT_STATUS="unavailable: $PY cannot import resnext_deploy (pip install 'resnext-deploy[tensorrt]')"
echo "$TRT_STATUS"

if selected environment; then
    run_step environment 60 env_info
fi
if selected samples; then
    run_step samples 120 write_samples
fi

# FP32 with TF32 (the default, as trtexec): logits cosine vs ONNX Runtime FP32 of at least 0.9999
if selected fp32 && needs_trt fp32; then
    run_step fp32 240 export_engine fp32 0.9999
fi
if selected fp16 && needs_trt fp16; then
    run_step fp16 300 export_engine fp16 0.999
fi
# INT8 with the tensorrt recipe (FP16 float regions); the onnxruntime-recipe artifact rides along for CPU devices
if selected int8; then
    if needs_trt int8; then
        run_step int8 420 export_engine int8 0.99 --calib-data "$OUT/samples" --calib-size "$CALIB_SIZE" \
            --targets onnxruntime,tensorrt --cache-dir "$OUT/cache"
    else  # what needs no GPU still runs: the TensorRT-recipe artifact a CPU machine makes for a GPU device
        run_step int8-artifact 600 int8_artifact_on_cpu
    fi
fi

if selected layers && needs_trt layers; then
    run_step layers 180 inspect_engines
fi

# the edge flow: one bundle, the TensorRT engine reused where its target matches, prediction on TensorRT
if selected bundle && needs_trt bundle; then
    run_step bundle 180 bundle_flow
fi

if selected trtexec && needs_trt trtexec; then
    if command -v trtexec >/dev/null; then
        run_step trtexec 240 trtexec_runs
    else
        record trtexec skipped 0 "trtexec is not on PATH (it ships with the TensorRT tar/deb packages, not the pip wheel)"
    fi
fi

if selected gpu-tests; then
    if [[ -d "$HERE/../tests/engines" ]] && "$PY" -c "import pytest" 2>/dev/null; then
        run_step gpu-tests 300 "$PY" -m pytest -q -p no:cacheprovider -m gpu "$HERE/../tests/engines/test_tensorrt_gpu.py"
    else
        record gpu-tests skipped 0 "needs the repository's tests/ and pytest (pip install pytest)"
    fi
fi

"$PY" "$HELPER" summary "$OUT" || echo "summary: could not be written (see the step lines above)"
if [[ $FAILED -ne 0 ]]; then
    echo "GPU check: a step failed or timed out (logs in $OUT/*.log)"
    exit 1
fi
if [[ $TRT_STATUS != tensorrt:* ]]; then
    echo "GPU check: TensorRT is unavailable here, its steps were skipped: ${TRT_STATUS#unavailable: }"
    exit 2
fi
echo "GPU check: every step passed"
