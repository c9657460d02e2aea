# `make demo` and `make test` work on a fresh clone: both create .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.edgec-installed
PYTEST_ARGS ?=

.PHONY: setup demo lint test test-slow bench clean toolchain-aarch64

setup: toolchain-aarch64 $(STAMP)

# Cross linker + qemu-user for the aarch64 targets and their emulated tests (issue 8): installed as root
# when missing; otherwise a message, and those tests skip with the same reason.
AARCH64_TOOLS := aarch64-linux-gnu-gcc qemu-aarch64-static
toolchain-aarch64:
	@missing=$$(for t in $(AARCH64_TOOLS); do command -v $$t >/dev/null || echo $$t; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	     (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	       gcc-aarch64-linux-gnu qemu-user-static) >/dev/null 2>&1; then \
	    echo "make: installed gcc-aarch64-linux-gnu and qemu-user-static"; \
	  else \
	    echo "make: $$missing missing and not installable here (needs root and apt-get); aarch64 tests will" \
	         "skip. Install with: sudo apt-get install gcc-aarch64-linux-gnu qemu-user-static" >&2; \
	  fi; \
	fi

# requirements.lock's TensorRT-RTX pins (tensorrt-rtx-*) are optional: installed after the rest, and where their
# wheels cannot install, a message and the TensorRT-RTX tests skip with the reason.
$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	grep -v '^tensorrt-rtx-' requirements.lock > $(VENV)/requirements-core.txt
	grep '^tensorrt-rtx-' requirements.lock > $(VENV)/requirements-tensorrt-rtx.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check -r $(VENV)/requirements-core.txt
	@$(BIN)/python -m pip install -q --disable-pip-version-check -r $(VENV)/requirements-tensorrt-rtx.txt || \
	  echo "make: TensorRT-RTX (requirements.lock's tensorrt-rtx-* pins) did not install here; --backend tensorrt" \
	       "--target rtx and its tests will skip" >&2
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/edgec report lenet --targets cpu --precisions fp32 --dataset digits -o reports/demo

# Lint first (seconds): ruff (style, import order) and import-linter (the layering in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# pytest exits 5 when it collected no test: that must fail CI, and does (non-zero), with a reason.
test: setup lint
	@$(BIN)/python -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$rc

test-slow: setup
	$(BIN)/python -m pytest -q -m slow --runslow $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) reports .pytest_cache
