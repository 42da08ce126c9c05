"""benchmarks/active_learning.py: the draws and the tally that say whether `suggest` beats random picks."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def active_learning():
    sys.path.insert(0, str(ROOT / "benchmarks"))  # it imports its neighbour quality.py, as when run
    try:
        spec = importlib.util.spec_from_file_location("active_learning", ROOT / "benchmarks" / "active_learning.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


def test_the_start_draws_every_label_in_its_share_and_at_least_once(active_learning):
    frame = pd.DataFrame({"label": ["a"] * 90 + ["b"] * 9 + ["c"]})
    picked = active_learning.stratified(frame, 0.2, np.random.default_rng(0))
    counts = frame.loc[picked, "label"].value_counts().to_dict()
    assert counts == {"a": 18, "b": 2, "c": 1}
    assert picked.is_unique and picked.is_monotonic_increasing


def line(arm, round_, accuracy, seed=42):
    """One result line as the benchmark writes it (macro-F1 equal to accuracy)."""
    common = {"set": "foldoc", "seed": seed, "strategy": "margin", "n": 200, "pool": 1000}
    return {
        **common,
        "arm": arm,
        "round": round_,
        "labelled": 200 + 200 * round_,
        "accuracy": accuracy,
        "macro_f1": accuracy,
    }


def test_the_tally_counts_the_rounds_suggested_wins_and_skips_an_unfinished_round(active_learning):
    results = [line("both", 0, 0.70), line("random", 1, 0.75), line("suggested", 1, 0.78)]
    results += [line("random", 2, 0.80), line("suggested", 2, 0.79), line("random", 3, 0.81)]  # round 3 cut off
    text = active_learning.tables(results)
    assert "| 1 | 400 | 0.750 | 0.780 | +3.0 |" in text
    assert "| 2 | 600 | 0.800 | 0.790 | -1.0 |" in text
    assert "| 3 |" not in text
    assert "foldoc (seed 42): suggested beats random on 1 of 2 rounds" in text


def test_each_seed_is_its_own_table(active_learning):
    results = [line("random", 1, 0.7, seed=1), line("suggested", 1, 0.8, seed=1)]
    results += [line("random", 1, 0.8, seed=2), line("suggested", 1, 0.7, seed=2)]
    text = active_learning.tables(results)
    assert "foldoc (seed 1): suggested beats random on 1 of 1 rounds" in text
    assert "foldoc (seed 2): suggested beats random on 0 of 1 rounds" in text
