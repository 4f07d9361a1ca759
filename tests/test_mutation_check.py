"""scripts/mutation_check.py stays in step with the source it breaks.

Each mutation names a snippet that must occur exactly once in its module; a refactoring that
rewrites the snippet would otherwise leave the mutation unable to run, and the tests it vouches
for unchecked. The mutations themselves run the suite many times over and stay out of CI.
"""
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("mutation_check", ROOT / "scripts" / "mutation_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutation_check"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


MUTATIONS = _script().MUTATIONS


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_every_snippet_occurs_once_and_its_tests_exist(mutation) -> None:
    source = (ROOT / "src" / "pconv" / mutation.module).read_text()
    assert source.count(mutation.old) == 1, f"{mutation.name}: its snippet occurs {source.count(mutation.old)} times"
    assert mutation.new != mutation.old
    for test in mutation.tests:
        assert (ROOT / test.split("::")[0]).is_file(), test
