import os
from pathlib import Path

import pytest
import torch

# Keep the test processes on the machine's cores without oversubscription: alone, one process uses up to two
# threads; under pytest-xdist (`make test` runs TEST_WORKERS = 2 workers) each worker, and every process it starts
# (`python -m cpm ...` subprocesses read OMP_NUM_THREADS), uses one.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(min(2, os.cpu_count() or 1))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA

