# Two set-up commands: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch/torchvision first, pinned: on the project's machines pip takes them from local disk.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PIP_INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt
PYTEST_ARGS ?=
# Two pytest-xdist workers (the project's machines have two cores), a test module per worker at a time so that
# module fixtures are built once; `make test PYTEST_XDIST=` runs in one process
PYTEST_XDIST ?= -n 2 --dist loadscope
GPU_CHECK_OUT ?= out/gpu-check
GPU_CHECK_CPU_OUT ?= out/gpu-check-cpu

.PHONY: install demo test test-fast docs gpu-check gpu-check-cpu bench bench-export bench-e2e bench-quant bench-mixed bench-refs bench-probes bench-engines bench-sweep bench-faults clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) $(TORCH_SPEC)
	$(PIP_INSTALL) -e '.[test]'
	touch $@

demo: install
	$(PY) scripts/demo.py

test: install
	$(PY) -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -m "not slow" $(PYTEST_XDIST) $(PYTEST_ARGS)

# docs/cli.md is generated from the commands themselves (Typer's docs generator); tests/test_docs.py checks it
docs: install
	$(PY) -m typer resnext_deploy.cli utils docs --name resnext-deploy --title "resnext-deploy command reference" --output docs/cli.md

# One NVIDIA GPU: TensorRT FP32/FP16/INT8 engines through the CLI, parity, latency, layer precisions (about 5-8 min
# after the install of the tensorrt extra, which is not timed; the script stops itself at TIME_LIMIT, 900 s)
gpu-check: install
	$(PIP_INSTALL) -e '.[tensorrt]'
	PYTHON=$(PY) scripts/gpu_check.sh $(GPU_CHECK_OUT)

# The same steps, commands and summary with ONNX Runtime in TensorRT's place, on any machine (the test suite runs
# it on the tiny model); the TensorRT-only steps (inspector, trtexec) are listed as skipped
gpu-check-cpu: install
	PYTHON=$(PY) scripts/gpu_check.sh --engine onnxruntime $(GPU_CHECK_CPU_OUT)

bench: install
	$(PY) bench/bench_all.py --work out/bench

bench-export: install
	$(PY) bench/bench_export.py

bench-e2e: install
	$(PY) bench/bench_e2e.py

bench-quant: install
	$(PY) bench/bench_quant.py

# mixed precision as the export builds it: held-out cosine vs OpenVINO latency per fallback precision, export walls,
# with NNCF's and ModelOpt's INT8 artifacts from the same FP32 ONNX and calibration images as reference points
bench-mixed: install bench-refs
	$(PY) bench/bench_mixed.py

# one venv per reference quantizer under out/bench-venvs/ (never .venv: ModelOpt brings onnxruntime-gpu, which must
# not meet onnxruntime); a ready one is kept, a failed install is reported and left out (bench/reference_venvs.sh)
bench-refs:
	PYTHON=$(PYTHON) bench/reference_venvs.sh

bench-probes: install
	$(PY) bench/bench_probes.py

bench-engines: install
	$(PY) bench/bench_engines.py

bench-sweep: install
	$(PY) bench/bench_sweep.py

bench-faults: install
	$(PY) bench/bench_faults.py

clean:
	rm -rf $(VENV) out .pytest_cache
