import sys

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The CI machine has 2 cores shared by pytest-xdist workers: OpenMP threads of tiny torch
    ops would fight each other, so tests that use torch run it on one thread."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
