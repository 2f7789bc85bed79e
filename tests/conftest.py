"""One torch thread in tests: the machine has 2 shared cores, and tiny models run
slower (and less predictably) with thread contention than on one thread."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
