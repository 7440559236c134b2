"""The one recipe table (paper | reconstruction model | retrieval model | ten-minute recipe | why): read from the
cards and the masking trade-off, and the same table in the README and docs/training.md."""

import json
from pathlib import Path

import pytest

from cavmae_lite import zoo
from cavmae_lite.tutorial import recipes

ROOT = Path(__file__).resolve().parents[1]
SWEEP = recipes.SWEEP  # the masking sweep's model (4 + 1 layers); "preset": today's ten-minute recipe
ROWS = [{"mask_ratio": 0.15, "model": SWEEP, "minutes": 10, "steps": 700, "load_avg": 1.0, "a2v_r1": 0.25,
         "v2a_r1": 0.24, "mse_ratio_a": 0.71, "mse_ratio_v": 1.01},
        {"mask_ratio": 0.75, "model": SWEEP, "minutes": 10, "steps": 1100, "load_avg": 1.0, "a2v_r1": 0.09,
         "v2a_r1": 0.08, "mse_ratio_a": 0.70, "mse_ratio_v": 0.94},
        {"mask_ratio": 0.75, "model": recipes.SWEEP_NONORM, "minutes": 10, "steps": 1300, "load_avg": 1.0,
         "a2v_r1": 0.1, "v2a_r1": 0.11, "mse_ratio_a": 0.30, "mse_ratio_v": 0.85},
        {"mask_ratio": 0.15, "model": "preset", "minutes": 10, "steps": 900, "load_avg": 1.0, "a2v_r1": 0.31,
         "v2a_r1": 0.29, "mse_ratio_a": 0.72, "mse_ratio_v": 1.0}]


def test_table_reads_the_cards_and_the_tradeoff():
    table = recipes.recipe_table(ROWS)
    lines = table.splitlines()
    assert len(lines) == 2 + len(recipes.ROWS) and all(line.count("|") == 7 for line in lines)
    for name in (zoo.NAME, zoo.MASK75):  # the CAV-MAE models (the table compares CAV-MAE recipes)
        m = zoo.read_card(name=name)["metrics"]
        assert f"{m['retrieval']['a2v']['r1']:.3f} / {m['retrieval']['v2a']['r1']:.3f}" in table
    mask_row = next(line for line in lines if line.startswith("| mask ratio"))
    assert "| 0.75 / 0.75 | 0.75 / 0.75 | 0.3 / 0.3 | 0.15 / 0.15 |" in mask_row
    assert "0.25 / 0.24 (ratio 0.15) to 0.09 / 0.08 (0.75)" in mask_row  # the why, from the sweep's rows
    assert "0.310 / 0.290" in table and "0.250 / 0.240" not in table  # the ten-minute recipe's R@1: its own row
    depth_row = next(line for line in lines if line.startswith("| encoder width"))
    assert "| 768, 11 + 1 | 192, 4 + 1 | 192, 4 + 1 | 128, 2 + 1 |" in depth_row
    assert "(run bench_masking)" in recipes.recipe_table([])  # nothing measured: said, not made up


def test_readme_and_training_doc_carry_todays_table():
    table = recipes.recipe_table(recipes.load_tradeoff())
    for doc in ("README.md", "docs/training.md"):
        assert table in (ROOT / doc).read_text(), f"{doc}: paste recipes.recipe_table(load_tradeoff()) again"


def test_load_tradeoff(tmp_path, monkeypatch):
    rows = recipes.load_tradeoff()
    assert {r["mask_ratio"] for r in rows if r["model"] == SWEEP} == {0.15, 0.3, 0.5, 0.75}
    assert [r["mask_ratio"] for r in rows if r["model"] == "preset"] == [0.15]  # the ten-minute recipe
    (tmp_path / "m.json").write_text(json.dumps(ROWS))
    assert recipes.load_tradeoff(tmp_path / "m.json") == ROWS
    with pytest.raises(FileNotFoundError, match="bench_masking"):
        recipes.load_tradeoff(tmp_path / "nowhere.json")
    monkeypatch.setattr(recipes, "TRADEOFF_JSON", tmp_path / "absent.json")  # an installed package: no benchmarks
    assert recipes.load_tradeoff() == []


def test_plot_masking_tradeoff(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from cavmae_lite.viz import plot_masking_tradeoff

    fig = plot_masking_tradeoff(ROWS, path=str(tmp_path / "t.png"))
    ax1, ax2 = fig.axes
    assert "R@1" in ax1.get_ylabel() and "mask ratio" in ax2.get_xlabel() and (tmp_path / "t.png").is_file()
    assert len(ax1.lines[0].get_xdata()) == 2  # the sweep's two ratios joined; the variants drawn apart
    assert SWEEP in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="bench_masking"):
        plot_masking_tradeoff([])


def test_committed_tradeoff_is_its_sources(tmp_path):
    """benchmarks/results/masking.json is what bench_masking --from-json makes of the committed runs: the sweep's
    files and the ten-minute recipe's 10-minute run (its file also holds 2 and 5 minutes, which are left out)."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_masking import from_json

    results = ROOT / "benchmarks" / "results"
    sources = sorted(results.glob("tradeoff_*.json")) + [results / "nonorm75.json", results / "ten_minute.json"]
    rows = from_json([str(p) for p in sources])
    assert sorted(map(json.dumps, rows)) == sorted(map(json.dumps, recipes.load_tradeoff()))
    preset = [r for r in rows if r["model"] == "preset"]
    assert len(preset) == 1 and round(preset[0]["minutes"]) == 10
    assert [round(r["minutes"]) for r in from_json([str(results / "ten_minute.json")], minutes=5)] == [5]
