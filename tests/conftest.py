"""One torch thread in tests: the machine has 2 shared cores, and tiny models run
slower (and less predictably) with thread contention than on one thread. pxby_lib is
imported before torch runs any operation, so the tests run with the pipeline's pinned
numerics (the caps are read at the first operation, not at `import torch`).

`raw_data`: the raw snapshot (data/pokemon, from data.dvc). Tests that read it FAIL, not
skip, when it is absent: `make test` pulls it first, so a missing snapshot is a broken
set-up, not a reason to check less."""

import os
from pathlib import Path

os.environ.setdefault("PXBY_PROGRESS", "0")  # no progress lines in test output

# pxby_lib pins the numerics: before numpy is imported (it reads its CPU-feature cap at
# import; pytest's plugins do not import it) and before any torch operation
import pxby_lib  # noqa: E402,F401,I001
import pytest  # noqa: E402
import torch  # noqa: E402

RAW_DATA = Path(__file__).resolve().parents[1] / "data" / "pokemon"


@pytest.fixture(scope="session")
def raw_data() -> Path:
    if not RAW_DATA.is_dir():
        pytest.fail(f"{RAW_DATA} is absent: run `make data` (`make test` does it first)",
                    pytrace=False)
    return RAW_DATA


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
