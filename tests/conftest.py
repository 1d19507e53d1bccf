import importlib
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "code"))

# CI sets CI=true, and .ci/run installs every optional tool there
ON_CI = os.environ.get("CI", "").lower() == "true"


def require(available: bool, reason: str) -> None:
    """Skip the calling test (or, at module level, the file) for want of an optional tool,
    saying ``reason``; under CI=true fail instead, so that CI never passes with a test
    skipped unnoticed."""
    if available:
        return
    if ON_CI:
        pytest.fail(f"{reason} (CI=true: a test that cannot run fails)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_module(name: str, reason: str):
    """The module ``name``, imported; if it is missing, ``require`` skips or fails."""
    try:
        return importlib.import_module(name)
    except ImportError:
        require(False, reason)
