"""Optional tools of some tests (TensorFlow, open_clip): skipped with the reason outside CI,
a failure under CI=true, where .ci/run installs them."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def need(module: str, install: str) -> ModuleType:
    """``module`` imported; missing: a skip naming ``install`` (a failure under CI=true)."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        message = f"{module} is not installed ({install}): {err}"
        if in_ci():
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message, allow_module_level=True)
