# The two commands of the README's quick start, and the steps they are made of.
# Each target installs what it needs: uv (into .uv-bootstrap/ unless one is on PATH),
# then the locked environment (.venv/, from uv.lock).

UV_VERSION := 0.13.8
UV := $(shell command -v uv 2>/dev/null || echo .uv-bootstrap/bin/uv)
export UV_PYTHON_DOWNLOADS := never
# Trust the machine's certificate store (corporate proxies, private CAs), like pip does.
export UV_SYSTEM_CERTS := 1
RUN := $(UV) run --frozen --all-packages --python python3.11

.PHONY: demo test sync lint typecheck pytest redis browser

demo: sync  ## Run FlowMesh on the embedded default (no Redis server, no S3)
	@scripts/demo.sh "$(RUN)"

test: sync redis browser lint typecheck pytest  ## Install everything and run the whole test suite

# --compile-bytecode: the venv ships its .pyc files, so a process started where
# PYTHONDONTWRITEBYTECODE is set (CI machines, containers) does not recompile torch,
# transformers and TRL from source at every import; once per install, ~1 min.
sync: $(UV)
	$(UV) sync --frozen --all-packages --python python3.11 --compile-bytecode

.uv-bootstrap/bin/uv:
	python3 -m venv .uv-bootstrap
	.uv-bootstrap/bin/pip install --quiet "uv==$(UV_VERSION)"

browser:  ## Debian's chromium for the browser tests in tests/ui/ (docs/ui.md)
	@scripts/ensure-chromium.sh

redis:
	@scripts/ensure-redis.sh

lint:
	$(RUN) ruff check .
	$(RUN) ruff format --check .

typecheck:
	$(RUN) mypy

# Two pytest workers, one test file each at a time (module fixtures stay in one process):
# the suite waits on real servers and subprocesses as much as it computes.
pytest:
	$(RUN) pytest -n 2 --dist loadfile --durations=25
