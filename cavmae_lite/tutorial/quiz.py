"""The notebooks' "Check your understanding" quizzes: blank answers, a ``check()`` that says right or wrong.

In a notebook the reader replaces each ``...`` and runs the cell::

    frames_5s = ...          # your answer
    check("q01_frames_5s", frames_5s)

The truth, the hint and the why of each question are out of the reader's sight, in the question bank
``cavmae_lite/tutorial/questions/<notebook>.json``: name -> ``{"truth": expression, "hint": text, "why": text,
"tol": number or null}``. The truth is a Python expression evaluated in the notebook's namespace when ``check`` runs,
so it is computed from what the notebook measured (a prediction asked before an experiment is checked after it).
``check`` prints one line per question (right, with the why / wrong, with the hint / not answered yet) and never
raises for a reader. ``check(name, answer, truth=..., hint=...)`` with an explicit truth still works outside the
notebooks. The answers stay blank in the repository; the solutions live in ``notebooks/solutions/<notebook>.json``
(name -> Python expression, evaluated in the notebook's namespace; names are unique across notebooks). With
``CAVMAE_QUIZ_SOLUTIONS`` set to that folder (or one such file), as ``make test`` does, a blank answer is replaced by its solution and a wrong solution, a missing one, or an answer
filled in the repository raises ``AssertionError``: CI keeps the quizzes correct and blank.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from pathlib import Path
from typing import Any

SOLUTIONS_ENV = "CAVMAE_QUIZ_SOLUTIONS"
QUESTIONS_DIR = Path(__file__).resolve().parent / "questions"
_UNSET = object()


def _equal(answer: Any, truth: Any, tol: float | None) -> bool:
    try:
        import torch

        if isinstance(answer, torch.Tensor) or isinstance(truth, torch.Tensor):
            a, t = torch.as_tensor(answer, dtype=torch.float64), torch.as_tensor(truth, dtype=torch.float64)
            return a.shape == t.shape and bool(torch.allclose(a, t, atol=tol or 0.0, rtol=0.0 if tol is None else 1e-6))
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if isinstance(answer, str) or isinstance(truth, str):
        return str(answer).strip().lower() == str(truth).strip().lower()
    if isinstance(answer, bool) or isinstance(truth, bool):
        return bool(answer) == bool(truth) and type(answer) is type(truth)
    if isinstance(answer, (int, float)) and isinstance(truth, (int, float)):
        return math.isclose(float(answer), float(truth), rel_tol=1e-9, abs_tol=tol or 1e-9)
    return answer == truth


def read_solutions(path: str | Path) -> dict[str, str]:
    """name -> expression from one solutions JSON file or a folder of them (a name may appear only once)."""
    p = Path(path)
    files = sorted(p.glob("*.json")) if p.is_dir() else [p]
    if not p.exists() or not files:
        raise AssertionError(f"{SOLUTIONS_ENV}={path}: no solutions file there")
    out: dict[str, str] = {}
    for f in files:
        for name, expr in json.loads(f.read_text()).items():
            if name in out:
                raise AssertionError(f"quiz {name!r} has solutions in two files (names must be unique): {f}")
            out[name] = expr
    return out


def read_questions(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """name -> {"truth", "hint", "why", "tol"} from the question bank (a folder of JSON files or one file; default
    :data:`QUESTIONS_DIR`)."""
    p = Path(path) if path is not None else QUESTIONS_DIR
    out: dict[str, dict[str, Any]] = {}
    for f in sorted(p.glob("*.json")) if p.is_dir() else [p]:
        for name, q in json.loads(f.read_text()).items():
            if name in out:
                raise ValueError(f"quiz {name!r} is in two question files (names must be unique): {f}")
            if "truth" not in q:
                raise ValueError(f"quiz {name!r} in {f} has no truth expression")
            out[name] = {"hint": "", "why": "", "tol": None, **q}
    return out


def _solutions() -> dict[str, str] | None:
    path = os.environ.get(SOLUTIONS_ENV)
    return read_solutions(path) if path else None


def check(name: str, answer: Any, truth: Any = _UNSET, hint: str = "", tol: float | None = None) -> bool:
    """Say whether ``answer`` (the reader's value for question ``name``) is right; returns it as a bool.

    Without ``truth`` the question comes from the bank (its truth evaluated in the caller's namespace, its hint, its
    why and its tolerance). Numbers compare with ``tol`` (absolute; default exact up to float rounding), strings
    without case or surrounding spaces, tensors element-wise. ``...`` means not answered yet.
    """
    caller = inspect.currentframe().f_back
    why = ""
    if truth is _UNSET:
        bank = read_questions()
        if name not in bank:
            raise KeyError(f"quiz {name!r} is not in the question bank {QUESTIONS_DIR}")
        q = bank[name]
        try:
            truth = eval(q["truth"], caller.f_globals, caller.f_locals)  # noqa: S307 - our own question bank
        except NameError as e:
            raise NameError(f"quiz {name!r} needs a result from the cells above ({e}): run them first") from None
        hint, tol, why = q["hint"], q["tol"], q["why"]
    solutions = _solutions()
    if solutions is not None:  # CI: the answer must be blank here, the solution must be right
        if answer is not Ellipsis:
            raise AssertionError(f"quiz {name!r}: the answer is filled in; leave `...` in the notebook and put the "
                                 f"solution in {os.environ[SOLUTIONS_ENV]}")
        if name not in solutions:
            raise AssertionError(f"quiz {name!r}: no solution in {os.environ[SOLUTIONS_ENV]}")
        answer = eval(solutions[name], caller.f_globals, caller.f_locals)  # noqa: S307 - our own solutions file
        if not _equal(answer, truth, tol):
            raise AssertionError(f"quiz {name!r}: the solution {solutions[name]!r} gives {answer!r}, expected {truth!r}")
    if answer is Ellipsis:
        print(f"  {name}: not answered yet (replace the ... and run the cell again)")
        return False
    ok = _equal(answer, truth, tol)
    if ok:
        print(f"  {name}: right" + (f". Why: {why}" if why else ""))
    else:
        print(f"  {name}: not quite, you said {answer!r}" + (f" (hint: {hint})" if hint else ""))
    return ok


__all__ = ["QUESTIONS_DIR", "SOLUTIONS_ENV", "check", "read_questions", "read_solutions"]
