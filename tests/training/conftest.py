"""Training tests share the worker tests' fabric, real in-process workers and the
session's directory of tiny models (tests/worker/conftest.py)."""

from __future__ import annotations

from tests.worker import conftest as worker

fabric = worker.fabric
fabric_url = worker.fabric_url
model_dir = worker.model_dir
workers = worker.workers
