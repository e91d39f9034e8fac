"""Shared pytest setup: CPU only, one thread, generated data in a per-session cache."""
import os
import shutil
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")
# The built-in dataset is generated once per test session, never into the user's cache. Set before
# percep_det is imported, since registration records the cache path in the dataset metadata.
if not os.environ.get("PERCEP_DET_CACHE"):
    _CACHE = tempfile.mkdtemp(prefix="percep_det_test_cache_")
    os.environ["PERCEP_DET_CACHE"] = _CACHE
else:
    _CACHE = None

import torch  # noqa: E402

torch.set_num_threads(1)


def pytest_sessionfinish(session, exitstatus):
    if _CACHE is not None:
        shutil.rmtree(_CACHE, ignore_errors=True)
