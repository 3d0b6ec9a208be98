"""The conformance suite (:mod:`vpbench.testing`) over every registered model, dataset and
metric, built-in and installed; ``vpbench check NAME`` runs the same cases for one plugin."""

from __future__ import annotations

import pytest

from tests.conftest import shared_data_dir
from vpbench import testing
from vpbench.plugins import get_harness

CASES = testing.cases(harness=get_harness(), data_dir=shared_data_dir())


@pytest.mark.parametrize("case", CASES, ids=str)
def test_contract(case):
    testing.run(case)
