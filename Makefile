# kseg: `make demo` and `make test` work on a fresh machine; both install what they need.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
KSEG   := $(VENV)/bin/kseg
STAMP  := $(VENV)/.kseg-installed
DEMO   ?= demo-runs

.PHONY: install torch hub test test-oldest test-versions coverage demo docs bench bench-peer bench-pipeline lint clean
.PHONY: gpu-check camvid-pack gpu-wheels

install: $(STAMP)

# Re-install only when the package metadata changes.
$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,jax]'
	touch $(STAMP)

# PyTorch for the torch backend's tests (tests/test_backends.py), only from the CPU wheel of
# torch 2.13.0 that pip finds on this disk (find-links, no index): from an index, torch is a
# CUDA build of several GB. Where that file is absent, or torch is already installed, this
# says so and goes on (the torch tests then skip with the reason); it never fails `make test`.
TORCH       ?= torch==2.13.0
TORCH_STAMP := $(VENV)/.kseg-torch

torch: $(TORCH_STAMP)

$(TORCH_STAMP): $(STAMP)
	@if $(PY) -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is None)"; then \
		echo "make torch: torch is already installed; kept as it is"; touch $@; \
	elif $(PY) -m pip install -q --dry-run --no-index --no-deps --ignore-installed '$(TORCH)' >/dev/null 2>&1; then \
		$(PY) -m pip install -q '$(TORCH)' && touch $@ || echo "make torch: pip failed on $(TORCH); torch tests will skip"; \
	else \
		echo "make torch: skipped: pip finds no local $(TORCH) wheel (find-links); torch tests will skip"; \
	fi

# keras-hub, for the keras-hub plugin's tests (tests/test_kseg_hub.py). The plugin itself
# (examples/kseg-hub) is installed by those tests into a private folder: in the venv, its 13
# networks would join `kseg fit --all` (make demo) and `kseg bench`. keras-hub pulls in
# tensorflow-text, which pins a TensorFlow minor, so pip is held to the keras and tensorflow
# installed (a constraints file) and cannot change them; where that cannot be satisfied this
# says so and goes on (the tests then skip with the reason).
HUB_STAMP := $(VENV)/.kseg-hub

hub: $(HUB_STAMP)

$(HUB_STAMP): $(STAMP) examples/kseg-hub/pyproject.toml
	$(PY) -m pip freeze | grep -iE '^(keras|tensorflow)==' > $(VENV)/kseg-hub-pins.txt
	$(PY) -m pip install -q -c $(VENV)/kseg-hub-pins.txt 'keras-hub>=0.32' && touch $@ \
		|| echo "make hub: pip cannot install keras-hub beside this keras/tensorflow; tests/test_kseg_hub.py will skip"

# Not measured by default: CI must stay under 15 minutes, and on a 2-core AVX2 CPU the
# suite took 1,027 s measured, 955 s unmeasured with two fewer real-network exports
# (602 s after the tests' processes were merged, benchmarks/LOG.md run K).
# `make coverage` measures the test processes and the kseg processes they start;
# `make test COV="--cov=kseg --cov-report=term"` the test processes alone.
COV ?=
# Test processes (pytest-xdist); each test file stays in one process (its module fixtures
# run once). `make test TEST_WORKERS=0` runs in this process alone.
TEST_WORKERS ?= 2
test: install torch hub
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(COV)

# A pinned set of versions (constraints/$(VERSIONS).txt) in its own venv, .venv-$(VERSIONS),
# and a smoke subset end to end: kseg.compat's entries, fused batch norm, fit + SIGTERM/
# SIGKILL + resume, eval, predict, export (keras, SavedModel, ONNX, LiteRT) and the JAX
# backend. `make test-oldest` is the oldest supported set (setup.cfg's floors) on the
# oldest Python declared, where this machine has it; `make test-versions VERSIONS=keras-3.12`
# another set. The whole suite runs on the newest versions (`make test`).
VERSIONS        ?= oldest
VERSIONS_PYTHON ?= $(if $(filter oldest,$(VERSIONS)),3.10,3)
VERSIONS_VENV   := .venv-$(VERSIONS)
VERSIONS_STAMP  := $(VERSIONS_VENV)/.kseg-installed
SMOKE_TESTS     ?= tests/test_compat.py tests/test_fused_norm.py \
	tests/test_resume.py::test_sigterm_then_sigkill_then_resume_gives_the_uninterrupted_history \
	tests/test_eval.py::test_eval_numbers_match_independent_computation \
	tests/test_predict_report.py::test_predict_folder_writes_masks_in_palette \
	tests/test_export.py::test_export_matches_checkpoint tests/test_backends.py

$(VERSIONS_STAMP): setup.cfg pyproject.toml constraints/$(VERSIONS).txt
	test -x $(VERSIONS_VENV)/bin/python || \
		$$(sh constraints/find-python $(VERSIONS_PYTHON) $(PYTHON)) -m venv $(VERSIONS_VENV)
	$(VERSIONS_VENV)/bin/python -m pip install -q --upgrade pip
	$(VERSIONS_VENV)/bin/python -m pip install -q -c constraints/$(VERSIONS).txt -e '.[dev,jax]'
	touch $@

test-versions: $(VERSIONS_STAMP)
	@$(VERSIONS_VENV)/bin/python -c "import sys, keras, tensorflow as tf, numpy as np; \
		print('$(VERSIONS): Python', sys.version.split()[0], 'TensorFlow', tf.__version__, \
		'Keras', keras.__version__, 'NumPy', np.__version__)" 2>/dev/null
	$(VERSIONS_VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -p no:cacheprovider $(SMOKE_TESTS)

test-oldest:
	$(MAKE) test-versions VERSIONS=oldest

coverage: install torch hub
	$(PY) -m pytest -q --cov=kseg --cov-report=term --cov-config=tests/coverage-subprocess.ini

# U-Net on the embedded synthetic scenes, sized for a first run on a laptop CPU (the `demo`
# recipe: 64 px native crops, about 320 steps), then Table I and II and the report. More
# networks compare: make demo DEMO_NETWORKS="unet fpn-resnet50". A second run skips what is trained.
DEMO_NETWORKS ?= unet
demo: install
	$(KSEG) data check
	$(KSEG) fit $(DEMO_NETWORKS) --recipe demo --runs $(DEMO)
	$(KSEG) eval --all --runs $(DEMO) --splits val,test
	$(KSEG) report --runs $(DEMO)

# The documentation (mkdocs.yml, docs/) into site/, strictly: a broken link or anchor, or an API
# docstring that does not render, is an error. Nothing is fetched while it builds. Then the
# checks mkdocs does not make (tests/test_docs.py, seconds): python blocks compile, the kseg
# commands shown exist, README.md's size and links.
DOCS_STAMP := $(VENV)/.kseg-docs

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[docs]'
	touch $@

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site
	$(PY) -m pytest -q -p no:cacheprovider tests/test_docs.py

bench: install
	$(KSEG) bench --fit-steps 0 --json bench.json

# The patch pipeline built by 1 and 2 worker processes against 1 and 2 of Keras' threads, on
# CamVid ($$KSEG_CAMVID or ../shared/camvid, else the synthetic scenes): patches/s, host CPU per
# patch, a 16-core projection. Writes PIPELINE_JSON; its last line is `pipeline 1->2 workers: N.NNx`.
PIPELINE_JSON ?= benchmarks/runs/pipeline.json
bench-pipeline: install
	$(PY) benchmarks/bench_pipeline.py --json $(PIPELINE_JSON)

# kseg's U-Net vs segmentation_models' (the study's library, Keras 2 via tf-keras) in its
# own venv, interleaved rounds; writes bench-peer.json. E.g. make bench-peer PEER_STEPS=1 PEER_ROUNDS=1
PEER_VENV   ?= .venv-peer
PEER_ROUNDS ?= 3
PEER_STEPS  ?= 5
PEER_PRECISION ?= auto
PEER_STAMP  := $(PEER_VENV)/.peer-installed

$(PEER_STAMP): benchmarks/peer/requirements.txt
	test -x $(PEER_VENV)/bin/python || $(PY) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install -q --upgrade pip
	$(PEER_VENV)/bin/python -m pip install -q -r benchmarks/peer/requirements.txt
	touch $(PEER_STAMP)

bench-peer: install $(PEER_STAMP)
	$(PY) benchmarks/peer/bench_peer.py --rounds $(PEER_ROUNDS) --steps $(PEER_STEPS) --precision $(PEER_PRECISION) \
		--peer-python $(PEER_VENV)/bin/python --json bench-peer.json

# `make gpu-check`: kseg on a machine with a GPU and no internet, in at most 8 minutes
# (docs/performance.md, "On a GPU"). Installs the wheels of .whl/ (or $KSEG_WHEELS) and kseg
# into GPU_PYTHON with pip kept off the network, then the GPU checks (mixed_float16, XLA,
# fused batch norm, --distribute), one epoch each of the study and of the camvid recipe on
# CAMVID_PACK with `kseg eval`, `kseg bench --table` and the GPU-relevant tests; writes
# GPU_CHECK_JSON after every step. Where the backend sees no GPU, or with DRY_RUN=1, the same
# steps run on the CPU at tiny sizes ("dry_run": true). GPU_CHECK_ARGS: more options of
# benchmarks/gpu/gpu_check.py (--no-install, --backend jax, --arch deeplabv3 ...).
GPU_PYTHON     ?= python3
CAMVID_PACK    ?= camvid-pack.tar
GPU_CHECK_JSON ?= gpu-check.json
DRY_RUN        ?=
GPU_CHECK_ARGS ?=
KSEG_CAMVID    ?= ../shared/camvid

gpu-check:
	$(GPU_PYTHON) benchmarks/gpu/gpu_check.py --pack $(CAMVID_PACK) --json $(GPU_CHECK_JSON) \
		$(if $(filter-out 0,$(DRY_RUN)),--dry-run) $(GPU_CHECK_ARGS)

# CamVid ($KSEG_CAMVID, else ../shared/camvid) as one tar for gpu-check: frames as JPEG (quality 95,
# 4:4:4), masks as the PNG files they are; fails, writing nothing, when it would be over 60 MB.
camvid-pack: install
	$(PY) benchmarks/gpu/camvid_pack.py $(KSEG_CAMVID) $(CAMVID_PACK) --max-mb 60

# What gpu-check installs on a lent GPU machine (Python 3.12, torch and JAX, no Keras): the wheels,
# downloaded here into .whl/ (git-ignored; it travels with the working tree).
GPU_WHEELS ?= keras==3.15.1 namex optree packaging setuptools
gpu-wheels: install
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d .whl $(GPU_WHEELS)

lint: install
	$(VENV)/bin/ruff check kseg tests examples benchmarks

clean:
	rm -rf $(VENV) $(PEER_VENV) .venv-*/ $(DEMO) runs bench.json bench-peer.json site *.egg-info
