"""Fixtures of the metrics tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from metrics import _ccip_resample


@pytest.fixture(params=[True, False], ids=["avx2", "scalar"])
def simd(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Run the test on the compiled CCIP resize's AVX2 path (skipped on a CPU without AVX2),
    then on its scalar path."""
    if request.param and not _ccip_resample.simd_available():
        pytest.skip("this CPU has no AVX2")
    previous = _ccip_resample.set_simd(request.param)
    yield request.param
    _ccip_resample.set_simd(previous)
