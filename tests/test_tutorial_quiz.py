"""The quiz helper: right / wrong / blank for readers; in CI, solutions put in and checked, answers kept blank."""

import json

import pytest
import torch

from cavmae_lite.tutorial import quiz
from cavmae_lite.tutorial.quiz import SOLUTIONS_ENV, check, read_questions, read_solutions


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


def test_bank_question_truth_from_the_callers_namespace(reader, tmp_path, monkeypatch, capsys):
    """A bank question's truth is computed where check runs (after the experiment), its why shown when right."""
    (tmp_path / "09.json").write_text(json.dumps({"q_rise": {"truth": "'yes' if after > before else 'no'",
                                                             "hint": "compare the two losses", "why": "less context"},
                                                  "q_tol": {"truth": "before", "tol": 0.05}}))
    monkeypatch.setattr(quiz, "QUESTIONS_DIR", tmp_path)
    before, after = 0.5, 0.7  # noqa: F841 - read by the truth expressions
    assert check("q_rise", "Yes") and not check("q_rise", "no")
    assert check("q_tol", 0.54) and not check("q_tol", 0.6)
    out = capsys.readouterr().out
    assert "Why: less context" in out and "hint: compare the two losses" in out
    with pytest.raises(KeyError, match="not in the question bank"):
        check("q_missing", 1)
    (tmp_path / "10.json").write_text(json.dumps({"q_need": {"truth": "undefined_result + 1"}}))
    with pytest.raises(NameError, match="run them first"):
        check("q_need", 1)
    (tmp_path / "11.json").write_text(json.dumps({"q_rise": {"truth": "1"}}))
    with pytest.raises(ValueError, match="two question files"):
        read_questions(tmp_path)


def test_shipped_bank_covers_every_notebook_question():
    """Every check("name", ...) in the notebooks has a bank entry and a solution, and no notebook cell holds truth=."""
    import re
    from pathlib import Path

    import nbformat

    root = Path(__file__).resolve().parents[1] / "notebooks"
    bank, solutions = read_questions(), read_solutions(root / "solutions")
    for path in sorted(root.glob("*.ipynb")):
        code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        assert "truth=" not in code, f"{path.name}: a truth sits in a cell the reader sees"
        for name in re.findall(r'check\("(\w+)"', code):
            assert name in bank, f"{path.name}: quiz {name} has no entry in the question bank"
            assert name in solutions, f"{path.name}: quiz {name} has no solution"
