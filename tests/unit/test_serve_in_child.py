"""``server.serve.in_child``: start-up work in a forked child, its result or error passed back, its imports not."""

from __future__ import annotations

import sys

import pytest

from server.errors import Code, SiegelError
from server.serve import in_child


def _import_and_answer(name: str) -> list[str]:
    __import__(name)
    return [name, "done"]


def _refuse(message: str) -> None:
    raise SiegelError(Code.CONFIG, message, "urn:example:minor")


def _crash() -> None:
    raise RuntimeError("a bug, not a caller's error")


def test_the_result_comes_back_and_the_childs_imports_stay_in_the_child() -> None:
    assert "colorsys" not in sys.modules
    assert in_child(_import_and_answer, "colorsys") == ["colorsys", "done"]
    assert "colorsys" not in sys.modules


def test_a_siegel_error_comes_back_with_its_code_message_and_minor() -> None:
    with pytest.raises(SiegelError) as caught:
        in_child(_refuse, "setting x: expected a number")
    assert (caught.value.code, caught.value.message, caught.value.minor) == (
        Code.CONFIG, "setting x: expected a number", "urn:example:minor")


def test_any_other_failure_is_an_internal_error_naming_the_work(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SiegelError) as caught:
        in_child(_crash)
    assert caught.value.code is Code.INTERNAL and "_crash failed in a child process" in caught.value.message
    assert "RuntimeError: a bug, not a caller's error" in capfd.readouterr().err
