#!/usr/bin/env bash
# First-GPU check of the TensorRT path, for one NVIDIA GPU with `pip install 'resnext-deploy[tensorrt]'`
# (about 5-8 minutes after the install): FP32, FP16 and INT8 (tensorrt recipe) engines of resnext50d_32x4d with
# proxy weights (random weights whose residual branches carry signal, bench/proxy_model.py), made through the CLI
# from one FP32 export; parity against ONNX Runtime FP32 on CPU and batch 1 / 8 latency (from each export's
# verification); the engine inspector's per-layer precisions (most dense convolutions INT8 in the INT8 engine,
# every convolution FP16 in the FP16 engine); a bundle built and run on TensorRT; trtexec's GPU compute time when a
# trtexec of the same TensorRT version is on PATH; the `gpu` tests; and a summary table (OUT/summary.md).
# Each step has its own timeout inside an overall time limit; a failed step does not stop the others.
#
#   scripts/gpu_check.sh [--engine tensorrt|onnxruntime] [OUT]     (or `make gpu-check`, `make gpu-check-cpu`)
#
# --engine onnxruntime (the CPU rehearsal, run by the test suite): exactly the same steps, commands and summary
# with ONNX Runtime in TensorRT's place; the TensorRT-only steps (engine inspector, trtexec) are listed as skipped.
# env: PYTHON (python3), MODEL (resnext50d_32x4d), WEIGHTS (proxy: written by the weights step; random; or a
#      checkpoint), CALIB_SIZE (64), EVAL_SIZE (64), PER_CLASS (8 images per class, 8 classes, in each split),
#      DURATION (1 s of timed runs per latency batch), ITERATIONS (10), WARMUP_MS (200 ms of untimed warm-up per
#      latency batch and side), TIME_LIMIT (the whole script: 900 s, 1800 s with --engine onnxruntime),
#      STEPS (all: a space-separated subset of environment samples weights fp32 fp16 int8 layers bundle trtexec
#      gpu-tests)
# Exit: 0 every step passed or was skipped, 1 a step failed or timed out, 2 bad usage, or TensorRT is
# unavailable here with --engine tensorrt (its steps were listed as unavailable).
set -u -o pipefail

ENGINE=tensorrt
while [[ $# -gt 0 ]]; do
    case $1 in
        --engine) ENGINE=${2:-}; shift $(($# > 1 ? 2 : 1)) ;;
        --engine=*) ENGINE=${1#*=}; shift ;;
        -h | --help) sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        --) shift; break ;;
        -*) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) break ;;
    esac
done
if [[ $ENGINE != tensorrt && $ENGINE != onnxruntime ]]; then
    echo "gpu_check.sh: --engine must be tensorrt or onnxruntime, not '$ENGINE'" >&2
    exit 2
fi
if [[ $ENGINE == tensorrt ]]; then TITLE=TensorRT DEFAULT_OUT=out/gpu-check; else TITLE="ONNX Runtime" DEFAULT_OUT=out/gpu-check-cpu; fi

OUT=${1:-$DEFAULT_OUT}
PY=${PYTHON:-python3}
MODEL=${MODEL:-resnext50d_32x4d}
WEIGHTS=${WEIGHTS:-proxy}
CALIB_SIZE=${CALIB_SIZE:-64}
EVAL_SIZE=${EVAL_SIZE:-64}
PER_CLASS=${PER_CLASS:-8}
DURATION=${DURATION:-1}
ITERATIONS=${ITERATIONS:-10}
WARMUP_MS=${WARMUP_MS:-200}
[[ $ENGINE == tensorrt ]] && DEFAULT_LIMIT=900 || DEFAULT_LIMIT=1800  # CPU exports of the full model take longer
TIME_LIMIT=${TIME_LIMIT:-$DEFAULT_LIMIT}
STEPS=${STEPS:-environment samples weights fp32 fp16 int8 layers bundle trtexec gpu-tests}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HELPER="$HERE/gpu_check_helper.py"
DEADLINE=$(($(date +%s) + TIME_LIMIT))
ENGINE_STATUS="not checked"
FAILED=0

mkdir -p "$OUT"
: >"$OUT/steps.tsv"
export HF_HUB_OFFLINE=1  # proxy or random weights: nothing to download

selected() { [[ " $STEPS " == *" $1 "* ]]; }

record() {  # step status seconds note
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4//$'\t'/ }" >>"$OUT/steps.tsv"
    printf '%-12s %-34s %5ss  %s\n' "$1" "$2" "$3" "$4"
}

# run_step NAME TIMEOUT_S COMMAND...: run with its own timeout (capped by the overall limit), log to OUT/NAME.log,
# record the outcome. A step that exits 0 after writing OUT/NAME.skipped is recorded as skipped, with that file's
# first line as the reason.
run_step() {
    local name=$1 limit=$2 start rc status left note
    shift 2
    left=$((DEADLINE - $(date +%s)))
    if ((left <= 0)); then
        FAILED=1
        record "$name" "TIMEOUT (overall limit)" 0 "not started: TIME_LIMIT=${TIME_LIMIT}s was used up by the steps before"
        return 124
    fi
    ((limit > left)) && limit=$left
    rm -f "$OUT/$name.skipped"
    start=$(date +%s)
    # bash -c: a step may be one of the exported functions below; timeout stops its whole process group
    timeout --kill-after=15 "$limit" bash -c '"$@"' bash "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    note=$(grep -v '^\s*$' "$OUT/$name.log" | tail -n 1 | cut -c1-160)
    case $rc in
        0) status=ok ;;
        124 | 137) status="TIMEOUT after ${limit}s" ;;
        1) status="FAILED (exit 1: a gate failed)" ;;
        2) status="FAILED (exit 2: bad input or unavailable)" ;;
        *) status="FAILED (exit $rc)" ;;
    esac
    if [[ $rc -eq 0 && -s "$OUT/$name.skipped" ]]; then
        status=skipped
        note=$(head -n 1 "$OUT/$name.skipped")
    fi
    [[ $rc -eq 0 ]] || FAILED=1
    record "$name" "$status" "$(($(date +%s) - start))" "$note"
    if [[ $rc -ne 0 ]]; then
        sed 's/^/    | /' "$OUT/$name.log" | tail -n 12
    fi
    return "$rc"
}

engine_ready() {  # NAME: true when the engine under test can run here, else record the step as unavailable
    if [[ $ENGINE_STATUS == "$ENGINE:"* ]]; then
        return 0
    fi
    record "$1" "unavailable" 0 "${ENGINE_STATUS#unavailable: }"
    return 1
}

tensorrt_only() {  # NAME WHAT: in the CPU rehearsal, a TensorRT-only step is listed as skipped, with the reason
    [[ $ENGINE == tensorrt ]] && return 0
    record "$1" skipped 0 "TensorRT only ($2): not part of the --engine $ENGINE rehearsal"
    return 1
}


# --- the steps (exported so that run_step can run each under its own timeout) ----------------------------------
env_info() {
    "$PY" -m resnext_deploy --version
    if command -v nvidia-smi >/dev/null; then nvidia-smi -L; else echo "nvidia-smi: not on PATH"; fi
    "$PY" -c "import polygraphy; print('polygraphy', polygraphy.__version__)"
    echo "$ENGINE_STATUS"
}

write_samples() {
    "$PY" -c "
import sys
from pathlib import Path
from resnext_deploy.data.samples import write_sample_images
root, per_class = Path(sys.argv[1]), int(sys.argv[2])
write_sample_images(root / 'train', per_class=per_class, seed=0)
write_sample_images(root / 'val', per_class=per_class, seed=1)
print(8 * per_class, 'calibration and', 8 * per_class, 'evaluation images in', root)" "$OUT/samples" "$PER_CLASS"
}

weights_arg() {  # what --weights the exports take: the proxy checkpoint the weights step writes, or WEIGHTS itself
    if [[ $WEIGHTS == proxy ]]; then echo "$OUT/weights/proxy.pth"; else echo "$WEIGHTS"; fi
}

write_weights() {
    if [[ $WEIGHTS != proxy ]]; then
        echo "$WEIGHTS weights: nothing to write" >"$OUT/weights.skipped"
        return 0
    fi
    "$PY" "$HELPER" proxy-weights "$MODEL" "$(weights_arg)"
}

export_engine() {  # PRECISION MIN_COSINE [extra export options...]; FP16 and INT8 start from the FP32 export
    local precision=$1 cosine=$2 source=(--weights "$(weights_arg)")
    shift 2
    if [[ $precision != fp32 && -f "$OUT/fp32/model.onnx" ]]; then
        source=(--fp32-from "$OUT/fp32/model.onnx")
    fi
    "$PY" -m resnext_deploy export "$MODEL" "${source[@]}" --precision "$precision" --backend "$ENGINE" \
        --output "$OUT/$precision" --force --min-batch 1 --opt-batch 8 --max-batch 8 --timing-cache "$OUT/timing.cache" \
        --eval-data "$OUT/samples" --eval-size "$EVAL_SIZE" --batch-sizes 1,8 --duration "$DURATION" \
        --iterations "$ITERATIONS" --warmup-ms "$WARMUP_MS" --max-top1-drop 100 --min-cosine "$cosine" "$@"
}

int8_artifact_on_cpu() {  # the CPU half of the edge flow; TensorRT then refuses cleanly (exit 2: not available)
    local source=(--weights "$(weights_arg)")
    [[ -f "$OUT/fp32/model.onnx" ]] && source=(--fp32-from "$OUT/fp32/model.onnx")
    "$PY" -m resnext_deploy export "$MODEL" "${source[@]}" --precision int8 --backend onnxruntime \
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
        "$PY" "$HELPER" layers "$engine" --json "$OUT/$precision/layers.json" --expect "$precision" || rc=1
    done
    return "$rc"
}

bundle_flow() {  # package the INT8 export, build it for this machine in its own folder, predict from that folder
    "$PY" -m resnext_deploy package "$OUT/int8" --output "$OUT/bundle.tar.gz" --force &&
        rm -rf "$OUT/bundle" &&
        "$PY" -m resnext_deploy build "$OUT/bundle.tar.gz" --output "$OUT/bundle" --backend "$ENGINE" &&
        "$PY" -m resnext_deploy predict "$OUT/bundle" "$(find "$OUT/samples/val" -name '*.JPEG' | sort | head -n 1)" \
            --backend "$ENGINE" --top 3
}

trtexec_runs() {  # trtexec's GPU compute time of the same engines, next to our end-to-end figures
    local precision batch engine rc=0 mismatch
    if ! mismatch=$("$PY" "$HELPER" trtexec-version "$(command -v trtexec)"); then
        echo "$mismatch" | tee "$OUT/trtexec.skipped"
        return 0
    fi
    echo "$mismatch"
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

gpu_tests() {  # the `gpu` tests; when every one of them skipped, the step says so (skipped, with pytest's reason)
    "$PY" -m pytest -q -p no:cacheprovider -m gpu -rs --junitxml "$OUT/gpu-tests.xml" \
        "$HERE/../tests/engines/test_tensorrt_gpu.py" || return
    "$PY" "$HELPER" pytest-outcome "$OUT/gpu-tests.xml" --skipped-file "$OUT/gpu-tests.skipped"
}

export OUT PY MODEL WEIGHTS ENGINE CALIB_SIZE EVAL_SIZE PER_CLASS DURATION ITERATIONS WARMUP_MS HELPER HERE ENGINE_STATUS
export -f env_info write_samples weights_arg write_weights export_engine int8_artifact_on_cpu inspect_engines \
    bundle_flow trtexec_runs gpu_tests

echo "GPU check of the $ENGINE path: $MODEL, $WEIGHTS weights, results in $OUT (time limit ${TIME_LIMIT}s)"
# the preflight's own error (a broken install, a missing module) is shown, not replaced by a guess
ENGINE_STATUS=$("$PY" "$HELPER" preflight --engine "$ENGINE" 2>"$OUT/preflight.log")
if [[ -z $ENGINE_STATUS ]]; then
    ENGINE_STATUS="unavailable: the preflight ($PY $HELPER preflight) failed: $(grep -v '^\s*$' "$OUT/preflight.log" | tail -n 1 | cut -c1-200)"
fi
echo "$ENGINE_STATUS"
export ENGINE_STATUS

if selected environment; then
    run_step environment 60 env_info
fi
if selected samples; then
    run_step samples 120 write_samples
fi
if selected weights; then
    run_step weights 300 write_weights
fi

# FP32 with TF32 (TensorRT's default, as trtexec): logits cosine vs ONNX Runtime FP32 (CPU) of at least 0.9999
if selected fp32 && engine_ready fp32; then
    run_step fp32 240 export_engine fp32 0.9999
fi
if selected fp16 && engine_ready fp16; then
    run_step fp16 300 export_engine fp16 0.999
fi
# INT8 with the engine's own recipe (tensorrt: FP16 float regions); the other recipe's artifact rides along
if selected int8; then
    if engine_ready int8; then
        run_step int8 420 export_engine int8 0.99 --calib-data "$OUT/samples" --calib-size "$CALIB_SIZE" \
            --targets onnxruntime,tensorrt --cache-dir "$OUT/cache"
    else  # what needs no GPU still runs: the TensorRT-recipe artifact a CPU machine makes for a GPU device
        run_step int8-artifact 600 int8_artifact_on_cpu
    fi
fi

if selected layers && tensorrt_only layers "engine inspector" && engine_ready layers; then
    run_step layers 180 inspect_engines
fi

# the edge flow: one bundle, unpacked and built in its own folder (the engine reused where its target matches),
# prediction from that folder
if selected bundle && engine_ready bundle; then
    run_step bundle 180 bundle_flow
fi

if selected trtexec && tensorrt_only trtexec "trtexec loads TensorRT engines" && engine_ready trtexec; then
    if command -v trtexec >/dev/null; then
        run_step trtexec 240 trtexec_runs
    else
        record trtexec skipped 0 "trtexec is not on PATH (it ships with the TensorRT tar/deb packages, not the pip wheel)"
    fi
fi

if selected gpu-tests; then
    if [[ -d "$HERE/../tests/engines" ]] && "$PY" -c "import pytest" 2>/dev/null; then
        run_step gpu-tests 300 gpu_tests
    else
        record gpu-tests skipped 0 "needs the repository's tests/ and pytest (pip install pytest)"
    fi
fi

"$PY" "$HELPER" summary "$OUT" --engine "$ENGINE" || echo "summary: could not be written (see the step lines above)"
if [[ $FAILED -ne 0 ]]; then
    echo "GPU check: a step failed or timed out (logs in $OUT/*.log)"
    exit 1
fi
if [[ $ENGINE_STATUS != "$ENGINE:"* ]]; then
    echo "GPU check: $TITLE is unavailable here, its steps were skipped: ${ENGINE_STATUS#unavailable: }"
    exit 2
fi
echo "GPU check: every step passed or was skipped (--engine $ENGINE)"
