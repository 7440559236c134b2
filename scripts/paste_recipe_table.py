"""Paste today's recipe table (``cavmae_lite.tutorial.recipes.recipe_table``) between the markers
``<!-- recipe-table -->`` and ``<!-- /recipe-table -->`` of the README and docs/training.md (after ``make zoo`` or
``benchmarks/bench_masking.py --out benchmarks/results``). ``tests/test_tutorial_recipes.py`` fails until it is run.

    python scripts/paste_recipe_table.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DOCS = ("README.md", "docs/training.md")
BLOCK = re.compile(r"(<!-- recipe-table -->\n)(?:.*?\n)?(<!-- /recipe-table -->)", re.S)


def main() -> int:
    from cavmae_lite.tutorial.recipes import load_tradeoff, recipe_table

    table = recipe_table(load_tradeoff())
    for name in DOCS:
        path = ROOT / name
        text = path.read_text()
        if not BLOCK.search(text):
            raise SystemExit(f"{path}: no <!-- recipe-table --> ... <!-- /recipe-table --> block to paste into")
        path.write_text(BLOCK.sub(lambda m: m.group(1) + table + "\n" + m.group(2), text))
        print(f"pasted the recipe table into {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
