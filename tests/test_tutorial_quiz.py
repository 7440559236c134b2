"""The quiz helper: right / wrong / blank for readers; in CI, solutions put in and checked, answers kept blank."""

import json

import pytest
import torch

from cavmae_lite.tutorial.quiz import SOLUTIONS_ENV, check, read_solutions


@pytest.fixture
def reader(monkeypatch):
    monkeypatch.delenv(SOLUTIONS_ENV, raising=False)


def test_reader_right_wrong_blank(reader, capsys):
    assert check("n", 498, 498)
    assert not check("n", 497, 498, hint="count the hops")
    assert not check("n", ..., 498)
    out = capsys.readouterr().out
    assert "n: right" in out and "hint: count the hops" in out and "not answered yet" in out
    assert check("s", " Column ", "column") and check("f", 0.1 + 0.2, 0.3) and not check("f", 0.31, 0.3)
    assert check("f", 0.31, 0.3, tol=0.02)
    assert check("t", torch.ones(3), torch.ones(3)) and not check("t", torch.ones(2), torch.ones(3))
    assert not check("b", 1, True)  # a bool question wants a bool


def test_ci_injects_solutions_and_rejects_wrong_or_filled(tmp_path, monkeypatch):
    (tmp_path / "01.json").write_text(json.dumps({"a": "x + 1", "wrong": "x"}))
    (tmp_path / "02.json").write_text(json.dumps({"b": "'row'"}))
    monkeypatch.setenv(SOLUTIONS_ENV, str(tmp_path))
    x = 41  # noqa: F841 - read by the solution expression through the caller's namespace
    assert check("a", ..., 42)
    assert check("b", ..., "row")
    with pytest.raises(AssertionError, match="the solution 'x' gives 41"):
        check("wrong", ..., 42)
    with pytest.raises(AssertionError, match="filled in"):
        check("a", 42, 42)
    with pytest.raises(AssertionError, match="no solution"):
        check("c", ..., 1)


def test_solution_names_unique(tmp_path):
    (tmp_path / "01.json").write_text(json.dumps({"a": "1"}))
    (tmp_path / "02.json").write_text(json.dumps({"a": "2"}))
    with pytest.raises(AssertionError, match="two files"):
        read_solutions(tmp_path)
