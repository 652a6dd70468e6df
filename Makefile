# lnn_control -- one-command set-up, demo and tests on a machine without ROS.
#
#   make demo    # create .venv if needed, install, run the demo (runs/demo)
#   make test    # create .venv if needed, install, run the test suite
#   make test-fast  # the same, fast tier only (pytest -m "not slow")
#   make bench   # as above plus benchmark deps, run benchmarks/bench_tick.py
#   make clean   # remove .venv and build artefacts (keeps runs/)
#
# Set-up is incremental:
#   * .venv is (re)created when missing or broken;
#   * `pip install -r requirements.txt` re-runs only when requirements.txt
#     changes (stamp: .venv/.stamp-deps);
#   * the package itself is installed with a REGULAR (non-editable)
#     `pip install .`, because only a regular install puts setup.py's
#     data_files (ament index marker, package.xml, launch/, config/) under the
#     venv prefix where ament_index_python finds them (a PEP 660 editable
#     install silently drops them) and the launchers of lnn_controller and
#     lnn_sim in .venv/lib/lnn_control, where `ros2 run` and launch_ros
#     look.  It is re-installed (a few seconds) when
#     setup.py / setup.cfg / package.xml or any file under lnn_control/,
#     launch/, config/ or resource/ changes (stamp: .venv/.stamp-pkg), so
#     the installed copy never goes stale.
#   * No AMENT_PREFIX_PATH is needed (none is set here): the installed
#     package finds its share files in the prefix it is installed into
#     (lnn_control/share.py), so `source .venv/bin/activate && lnn-control
#     demo` works as `make demo` does.  Only the ROS tools of a ROS install
#     (`ros2 launch`, `ros2 run`) find packages through the ament index
#     alone: for them, put the venv on AMENT_PREFIX_PATH.
#
# Tests run with `python -P` so that `import lnn_control` resolves to the
# installed package (what users get) rather than the source tree in the cwd.

PYTHON ?= python3
VENV ?= .venv

PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
DEPS_STAMP := $(VENV)/.stamp-deps
BENCH_STAMP := $(VENV)/.stamp-bench
PKG_STAMP := $(VENV)/.stamp-pkg

PKG_SOURCES := setup.py setup.cfg package.xml \
	$(shell find lnn_control launch config resource -type f \
		-not -path '*/__pycache__/*' -not -name '*.py[co]' \
		-not -name '*.nbi' -not -name '*.nbc' 2>/dev/null | sort)

# A venv is usable if its interpreter starts and has pip.
VENV_OK := "$(PY)" -c "import pip" >/dev/null 2>&1

.PHONY: all setup demo test test-fast bench clean venv

all: test

# (Re)create the venv if missing/broken, then bring the stamps up to date in a
# sub-make so the stamps are re-examined after a possible re-creation.
venv:
	@if ! $(VENV_OK); then \
		echo ">>> creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version 2>&1))"; \
		rm -rf "$(VENV)"; \
		"$(PYTHON)" -m venv "$(VENV)" || exit 1; \
	fi

setup: venv
	@# an install removed behind make's back (pip uninstall, pip install --prefix elsewhere)
	@[ -x "$(VENV)/bin/lnn-control" ] || rm -f "$(PKG_STAMP)"
	@$(MAKE) --no-print-directory $(PKG_STAMP)

$(DEPS_STAMP): requirements.txt
	@echo ">>> installing requirements.txt into $(VENV)"
	$(PIP) install -q -r requirements.txt
	@touch "$@"

$(BENCH_STAMP): requirements-bench.txt $(DEPS_STAMP)
	@echo ">>> installing requirements-bench.txt into $(VENV)"
	$(PIP) install -q -r requirements-bench.txt
	@touch "$@"

# --no-deps: every dependency is pinned in requirements.txt; `pip check`
# then fails if setup.py requires something requirements.txt lacks.
# build/lib is removed first so files deleted from the tree cannot linger in
# the wheel.
$(PKG_STAMP): $(DEPS_STAMP) $(PKG_SOURCES)
	@echo ">>> installing lnn_control (regular install) into $(VENV)"
	@rm -rf build/lib build/bdist.* lnn_control.egg-info
	$(PIP) install -q --no-deps --force-reinstall .
	$(PIP) check
	@touch "$@"

# ROS isolation: a per-run domain id (1..100, from the shell's PID) and
# localhost-only discovery, so concurrent runs/machines do not cross-talk.
# NUMBA_CACHE_DIR is left to the package (lnn_control/__init__.py).
# PYTEST_ARGS selects a tier: `make test-fast` is `make test PYTEST_ARGS='-m "not slow"'`.
PYTEST_ARGS ?=

test: setup
	@domain=$$(( $$$$ % 100 + 1 )); \
	echo ">>> pytest $(PYTEST_ARGS) (ROS_DOMAIN_ID=$$domain, ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST)"; \
	rc=0; \
	env ROS_DOMAIN_ID=$$domain ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST \
		MPLBACKEND="$${MPLBACKEND:-Agg}" \
		"$(PY)" -P -m pytest -q $(PYTEST_ARGS) test || rc=$$?; \
	if [ $$rc -ne 0 ]; then echo ">>> pytest exited with code $$rc"; fi; \
	exit $$rc

test-fast:
	@$(MAKE) --no-print-directory test PYTEST_ARGS='-m "not slow"'

demo: setup
	@mkdir -p runs
	env ROS_AUTOMATIC_DISCOVERY_RANGE="$${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}" \
		MPLBACKEND="$${MPLBACKEND:-Agg}" \
		"$(VENV)/bin/lnn-control" demo --plant pendulum --neuron esn \
		--duration 60 --payload-change-at 40 --out runs/demo

bench: setup
	@$(MAKE) --no-print-directory $(BENCH_STAMP)
	@mkdir -p runs
	env ROS_AUTOMATIC_DISCOVERY_RANGE="$${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}" \
		"$(PY)" benchmarks/bench_tick.py --json runs/bench_tick.json

clean:
	rm -rf "$(VENV)" build dist *.egg-info .pytest_cache
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
