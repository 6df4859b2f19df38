"""The hub fixture: one real herald per test module, Mercure enabled."""

from __future__ import annotations

from typing import Iterator

import pytest

from support import MERCURE_TOML, Hub, start_hub


@pytest.fixture(scope="module")
def hub() -> Iterator[Hub]:
    """One hub per test module, Mercure enabled; tests keep to their own accounts and topics."""
    yield from start_hub(MERCURE_TOML)
