from __future__ import annotations

import pytest

import connguard
from tests.helpers import VENDORS


@pytest.fixture(params=VENDORS)
def vendor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _fresh_stats() -> None:
    connguard.reset_stats()
