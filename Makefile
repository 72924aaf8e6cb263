# Two commands for a new user: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A CUDA build that also runs on CPU; override TORCH to pick another build or version.
TORCH ?= torch==2.14.1 torchvision==0.29.1
EXPERIMENT ?= dqn_cartpole
PYTEST_ARGS ?=

.PHONY: install run test bench clean

# Re-installs only when pyproject.toml or the checkout's path changed (an editable install
# points at one checkout, so a cached venv reused from another clone must be refreshed).
install:
	@want="$$(sha256sum pyproject.toml | cut -c1-16) $(CURDIR)"; \
	if [ ! -x "$(PY)" ]; then echo "creating $(VENV)"; $(PYTHON) -m venv "$(VENV)" || exit 1; fi; \
	if [ "$$(cat "$(VENV)/.raydl-installed" 2>/dev/null)" != "$$want" ]; then \
	  echo "installing raydl and its dependencies into $(VENV) (first time: a few minutes)"; \
	  "$(PY)" -m pip install -q --upgrade pip && \
	  "$(PY)" -m pip install -q $(TORCH) && \
	  "$(PY)" -m pip install -q -e '.[test]' && \
	  echo "$$want" > "$(VENV)/.raydl-installed" || exit 1; \
	fi

run: install
	"$(VENV)/bin/raydl" run $(EXPERIMENT) $(ARGS)

test: install
	"$(PY)" -m pytest $(PYTEST_ARGS)

bench: install
	"$(PY)" -m pip install -q -e '.[test,bench]'
	"$(PY)" benchmarks/dqn_cartpole.py $(ARGS)

clean:
	rm -rf runs .pytest_cache
