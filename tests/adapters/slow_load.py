"""``flowmesh worker`` whose every model load takes ``$FM_SLOW_LOAD_S`` seconds longer.

    python tests/adapters/slow_load.py /path/to/flowmesh worker --worker-id ...

test_progress.py starts the worker this way (``Procs.worker(..., prefix=...)``) to make
a cold start last long enough to be seen: the real worker, its real loading code, and
then a pause while the model counts as loading (inside the warm cache's load, where the
worker has already reported ``phase: loading``). Nothing else changes.
"""

from __future__ import annotations

import os
import runpy
import sys
import time
from collections.abc import Callable
from typing import Any

from flowmesh_worker.weights.cache import WarmCache

DELAY_S = float(os.environ["FM_SLOW_LOAD_S"])
_real_get = WarmCache.get


def _slow_get(self: WarmCache, kind: str, model: Any, load: Callable[[], Any]) -> Any:
    def slow_load() -> Any:
        loaded = load()
        time.sleep(DELAY_S)
        return loaded

    return _real_get(self, kind, model, slow_load)


if __name__ == "__main__":
    WarmCache.get = _slow_get  # type: ignore[method-assign]
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
