"""The generated API reference matches the code's docstrings."""

from __future__ import annotations

import importlib.util

import pytest

from conftest import ROOT

pytestmark = pytest.mark.one_backend  # nothing here depends on the registry backend


def test_api_reference_is_up_to_date():
    spec = importlib.util.spec_from_file_location("build_api", ROOT / "docs" / "build_api.py")
    build_api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_api)
    assert (ROOT / "docs" / "API.md").read_text() == build_api.render(), "run `.venv/bin/python docs/build_api.py`"
    assert "(no docstring)" not in build_api.render()
