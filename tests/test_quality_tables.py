"""benchmarks/quality.py's verdicts: what decides whether a lever becomes a default (issue 28)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def quality():
    spec = importlib.util.spec_from_file_location("quality", ROOT / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def runs(lever, accuracies, name="debian"):
    return [
        {"set": name, "run": lever, "lever": lever, "seed": str(seed), "accuracy": a, "macro_f1": a}
        for seed, a in zip((42, 1, 2), accuracies, strict=False)
    ]


def verdict(table: str, lever: str) -> str:
    row = next(line for line in table.splitlines() if f"| {lever} |" in line)
    return row.rstrip(" |").rsplit("| ", 1)[-1]


@pytest.mark.parametrize(
    ("lever", "accuracies", "expected"),
    [
        ("wins_beyond_spread", [0.87, 0.86, 0.87], "wins"),  # +2.3 on average, every seed, spread 1
        ("within_spread", [0.851, 0.841, 0.851], "noise"),  # every seed +0.1: below the spread
        ("seeds_disagree", [0.90, 0.83, 0.86], "noise"),  # +2 on average, one seed lower
        ("loses", [0.82, 0.81, 0.82], "loses"),
    ],
)
def test_a_lever_wins_only_when_every_seed_agrees_beyond_the_defaults_spread(quality, lever, accuracies, expected):
    table = quality.paired(runs("default", [0.85, 0.84, 0.85]) + runs(lever, accuracies))
    assert verdict(table, lever) == expected


def test_refit_is_paired_with_the_held_out_default_not_the_default(quality):
    results = runs("default", [0.70, 0.70, 0.70]) + runs("default_holdout", [0.85, 0.84, 0.85])
    table = quality.paired(results + runs("refit_all", [0.86, 0.85, 0.86]))
    row = next(line for line in table.splitlines() if "| refit_all |" in line)
    assert "| default_holdout |" in row and "+0.0100" in row


def test_the_differences_own_spread_is_shown_beside_the_verdict_but_decides_nothing(quality):
    # Splits move the default by 6 points; the lever gains 3-4 on each: noise by the rule, while the
    # differences alone (spread 1) agree beyond their own spread.
    table = quality.paired(runs("default", [0.72, 0.76, 0.78]) + runs("steady", [0.755, 0.795, 0.81]))
    row = next(line for line in table.splitlines() if "| steady |" in line)
    assert row.endswith("| wins | noise |"), row
    scattered = quality.paired(runs("default", [0.72, 0.76, 0.78]) + runs("scattered", [0.78, 0.765, 0.79]))
    assert next(line for line in scattered.splitlines() if "| scattered |" in line).endswith("| noise | noise |")


def test_the_abstain_table_reports_realised_precision_against_the_target(quality):
    found = {"0.95": {"threshold": 0.8, "reached_on_validation": True, "test_precision": 0.93, "test_coverage": 0.6}}
    results = [{**run, "abstain": found} for run in runs("default", [0.85, 0.84])]
    results[1]["abstain"] = {"0.95": {**found["0.95"], "test_precision": 0.97}}
    assert "| debian | default | 0.95 | 2 | 0.950 (0.930) | 60.0% |" in quality.abstain_table(results)


def test_the_tfidf_blend_is_paired_with_the_model_it_blends(quality):
    results = runs("default", [0.85, 0.84, 0.85])
    for result, blended in zip(results, (0.88, 0.87, 0.88), strict=True):
        result["blend"] = {"weight": 0.5, "accuracy": blended, "macro_f1": blended}
    assert verdict(quality.paired(results), "default + blend") == "wins"


def test_the_default_is_paired_against_the_hugging_face_reference(quality):
    # The reference is not a lever: its row is the default's margin over it, on the same splits.
    results = runs("default", [0.85, 0.84, 0.85]) + runs(quality.REFERENCE, [0.82, 0.82, 0.83])
    table = quality.paired(results)
    row = next(line for line in table.splitlines() if f"| {quality.REFERENCE} |" in line)
    assert row.startswith("| debian | default | hf_pytorch | 3 | +0.0233") and verdict(table, "default") == "wins"
    assert "hf_finetune.py" in quality.legend(results)
    assert f"| debian | {quality.REFERENCE} | unknown | 3 | 0.823 (0.010) |" in quality.spread(results)


def test_a_verdict_needs_three_seeds_of_the_lever_and_of_its_baseline(quality):
    # One seed of the baseline has no spread: without the rule any gain would "win".
    one = quality.paired(runs("default", [0.85]) + runs("ema", [0.86]))
    assert verdict(one, "ema") == "too few seeds (1 of 3): wins so far"
    two = quality.paired(runs("default", [0.85, 0.84, 0.85]) + runs("ema", [0.80, 0.79]))
    assert verdict(two, "ema") == "too few seeds (2 of 3): loses so far"


def test_a_lever_is_paired_with_the_default_run_on_its_own_machine(quality):
    # The default ran on two machines; the lever's seeds pair with the one it ran on, and say so.
    amd = [{**run, "machine": "AMD"} for run in runs("default", [0.85, 0.84, 0.85])]
    intel = [{**run, "machine": "Intel"} for run in runs("default", [0.80, 0.80, 0.80])]
    lever = [{**run, "machine": "AMD"} for run in runs("ema", [0.87, 0.86, 0.87])]
    row = next(line for line in quality.paired(intel + amd + lever).splitlines() if "| ema |" in line)
    assert "+0.0200" in row and "| 3 of 3 |" in row and row.endswith("| wins |")
    # Only the Intel default exists: the pairs cross machines, and the column says so.
    row = next(line for line in quality.paired(intel + lever).splitlines() if "| ema |" in line)
    assert "+0.0667" in row and "| 0 of 3 |" in row
    assert "| debian | default | AMD | 3 | 0.847 (0.010) |" in quality.spread(intel + amd)


def test_the_machine_is_the_cpus_name_and_its_bfloat16(quality, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert quality.machine(str(cpuinfo)) == "AMD EPYC (avx512_bf16)"
    assert quality.machine(str(tmp_path / "missing")) == "unknown"
