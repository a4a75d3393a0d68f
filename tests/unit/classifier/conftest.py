from __future__ import annotations

import pytest

from switchyard.common.embedding.model_files import ModelFiles, ensure_built


@pytest.fixture(scope="session")
def model_files() -> ModelFiles:
    """The built ONNX files (`make install` builds them; built here on a fresh machine, ~6 s)."""
    return ensure_built()[0]
