"""RTL test of the loader's model check: the core's ``model_ok`` in the generated Verilog
(Icarus and Verilator) against ``hw.descriptors.check_descriptors`` on the sections of
``bench.descriptor_cases.model_check_cases`` (header edges, layer fields at and past their
limits, short sections, random words in random fields), written with random load gaps."""

from pathlib import Path

import numpy as np
import pytest

from bench.descriptor_cases import model_check_cases, small_engine
from hw.image import ImageError
from hw.descriptors import check_descriptors

SEED = 3


def _verdict(words, config):
    try:
        check_descriptors(words, config)
        return 1
    except ImageError:
        return 0


@pytest.mark.parametrize("sim", [pytest.param("icarus", marks=pytest.mark.icarus),
                                 pytest.param("verilator", marks=pytest.mark.verilator)])
def test_model_check(sim, tmp_path):
    from gateware.core import Core
    from gateware.simulate import build, run

    config = small_engine()
    cases = model_check_cases(np.random.default_rng(SEED))
    arrays = {"n_cases": len(cases)}
    for i, words in enumerate(cases):
        arrays[f"words_{i}"] = np.asarray(words, dtype=np.uint64)
        arrays[f"ok_{i}"] = _verdict(words, config)
    assert 10 < sum(arrays[f"ok_{i}"] for i in range(len(cases))) < len(cases) - 10
    np.savez(tmp_path / "cases.npz", **arrays)
    root = Path(__file__).resolve().parents[1]
    build_dir = root / "sim_build" / f"model_check_{sim}"
    runner = build(Core(config=config), sim=sim, build_dir=build_dir)
    run(runner, build_dir=build_dir, test_module="model_check_tb", test_dir=Path(__file__).parent,
        seed=SEED, extra_env={"MODEL_CHECK_CASES": str(tmp_path / "cases.npz"),
                              "MODEL_CHECK_SEED": str(SEED)})
