# uv must use the installed Python, never download one.
export UV_PYTHON_DOWNLOADS := never
# uv from PATH, or the one `make install` puts in this Python's site-packages.
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
# The template directory and the hooks are Jinja: the bake tests lint what they render.
LINTED := local_extensions.py benchmarks scripts tests

.PHONY: help install test test-fast demo bench lint format clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install: ## Install the template's dev tools into .venv (installs uv with pip if missing)
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --quiet

test: install ## The whole template suite, slow tests included
	$(UV) run pytest -n auto

test-fast: install ## The suite without the slow tests that install each baked project
	$(UV) run pytest -n auto -m "not slow"

demo: install ## Render, install and start the default project, talk to it, serve its playground
	$(UV) run python scripts/demo.py

bench: install ## Bake the default project and run the benchmarks against it (ARGS: --store-only, --test-suite, --against REV)
	$(UV) run python scripts/bench.py $(ARGS)

lint: install ## Check the template's own code
	$(UV) run ruff check $(LINTED)
	$(UV) run ruff format --check $(LINTED)

format: install ## Fix the template's own code style
	$(UV) run ruff check --fix $(LINTED)
	$(UV) run ruff format $(LINTED)

clean: ## Remove build output and caches
	rm -rf build .pytest_cache .ruff_cache
