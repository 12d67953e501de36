#!/usr/bin/env bash
# One virtual environment per reference quantizer of bench_mixed.py, under out/bench-venvs/<tool>/ (`make bench-refs`).
#
# Never the project's .venv: NNCF brings onnxruntime, ModelOpt brings onnxruntime-gpu (whose CPU provider runs
# on a machine without a GPU), and the two wheels must never share an environment. A venv that is ready
# (its .ready stamp, with `pip freeze`, is written last) is kept; a tool whose install fails prints one line
# saying why and the next one is tried: the bench then leaves that tool out. Always exits 0.
#
# Usage: bench/reference_venvs.sh [TOOL...]   (default: nncf modelopt; VENVS=out/bench-venvs, PYTHON=python3)
set -u
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENVS="${VENVS:-$ROOT/out/bench-venvs}"
PYTHON="${PYTHON:-python3}"

# The tools are pinned: a reference point is only comparable between runs with the same release.
spec() {
    case "$1" in
        nncf) echo "nncf==3.4.0 onnx onnxruntime" ;;
        # ModelOpt's [onnx] extra pulls torch: 2.14.1 is the release on the project's machines' disk
        modelopt) echo "torch==2.14.1 nvidia-modelopt[onnx]==0.47.0" ;;
        *) return 1 ;;
    esac
}

make_venv() {
    local tool="$1" venv="$VENVS/$1" packages log
    packages="$(spec "$tool")" || { echo "reference $tool: unknown tool (nncf, modelopt)"; return; }
    if [ -f "$venv/.ready" ]; then
        echo "reference $tool: ready in $venv"
        return
    fi
    rm -rf "$venv"
    mkdir -p "$VENVS"
    log="$VENVS/$tool.install.log"
    echo "reference $tool: installing $packages into $venv (log: $log)"
    # shellcheck disable=SC2086
    if ! { "$PYTHON" -m venv "$venv" && "$venv/bin/python" -m pip install --disable-pip-version-check $packages; } >"$log" 2>&1; then
        echo "reference $tool: install failed, the bench leaves it out (last line: $(grep -v '^\s*$' "$log" | tail -1))"
        return
    fi
    if "$venv/bin/python" -m pip show --quiet onnxruntime >/dev/null 2>&1 \
        && "$venv/bin/python" -m pip show --quiet onnxruntime-gpu >/dev/null 2>&1; then
        echo "reference $tool: onnxruntime and onnxruntime-gpu both installed, which break each other: left out"
        return
    fi
    "$venv/bin/python" -m pip freeze --disable-pip-version-check >"$venv/.ready"
    echo "reference $tool: ready in $venv ($(grep -i -E "^(nncf|nvidia-modelopt|onnxruntime(-gpu)?)==" "$venv/.ready" | tr '\n' ' '))"
}

for tool in "${@:-nncf modelopt}"; do
    for name in $tool; do make_venv "$name"; done
done
exit 0
