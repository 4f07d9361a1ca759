"""Shared test fixtures: where the research-only evaluation data is, and what its absence means.

The evaluation data lives outside the repository, in ``../shared/eval-data`` (or where
``PCONV_EVAL_DATA`` points). Without it the tests that need it skip with the reason, except under
``CI=true``, where they FAIL: a CI run that silently skipped the regression guard would pass a
model that lost quality.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def eval_data_root() -> Path:
    """``$PCONV_EVAL_DATA``, else ``shared/eval-data`` beside the repository."""
    given = os.environ.get("PCONV_EVAL_DATA", "").strip()
    return Path(given) if given else Path(__file__).resolve().parents[2] / "shared" / "eval-data"


@pytest.fixture(scope="module")  # module-scoped fixtures (the regression scores) use it
def eval_data() -> Callable[[str], Path]:
    """``eval_data(sub)``: the folder ``sub`` of the evaluation data; skips (fails under CI) without it."""
    def need(sub: str = "") -> Path:
        path = eval_data_root() / sub
        if not path.is_dir():
            reason = (f"the evaluation data is not at {path} (put the shared folder beside the repository, "
                      "or set PCONV_EVAL_DATA to it)")
            if IN_CI:
                pytest.fail(f"CI must run this test, but {reason}", pytrace=False)
            pytest.skip(reason)
        return path

    return need
