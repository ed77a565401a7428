"""The dashboard's warm-up thread and Streamlit's script thread may both parse Python source at
once; on CPython < 3.13 that can fail ("AST constructor recursion depth mismatch", seen in CI on
the config matrix's dashboard test), so the app serialises ``ast.parse`` (``app/views/common.py``)."""

from __future__ import annotations

import ast
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def serialise(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from app.views.common import _serialise_ast_parse

    original = ast.parse
    yield _serialise_ast_parse
    ast.parse = original


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="ast.parse is thread-safe there")
def test_one_thread_at_a_time_parses(serialise):
    state = {"inside": 0, "most": 0}
    guard = threading.Lock()

    def slow_parse(source, *args, **kwargs):  # stands in for the C parser, and lasts a while
        with guard:
            state["inside"] += 1
            state["most"] = max(state["most"], state["inside"])
        time.sleep(0.01)
        with guard:
            state["inside"] -= 1
        return source

    ast.parse = slow_parse
    serialise()
    serialise()  # idempotent: one lock around the parser, not two
    assert ast.parse._multimodal_locked and ast.parse("x = 1") == "x = 1"
    threads = [
        threading.Thread(target=lambda: [ast.parse("y = 2") for _ in range(5)]) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert state["most"] == 1


def test_real_parsing_still_works_through_the_lock(serialise):
    serialise()
    tree = ast.parse("def f(a):\n    return a + 1\n")
    assert isinstance(tree.body[0], ast.FunctionDef)
