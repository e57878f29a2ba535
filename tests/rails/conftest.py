from __future__ import annotations

import pytest
from rails_support import WordScorer


@pytest.fixture
def scorer() -> WordScorer:
    return WordScorer()
