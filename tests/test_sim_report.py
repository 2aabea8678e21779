"""The simulator's validation report (quick mode): files, targets, statuses, refusal to overwrite."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from caloml.errors import OutputExistsError
from caloml.sim.validation_report import write_validation_report
from caloml.sim.validation_targets import TARGETS


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("report") / "v"
    report = write_validation_report(out, quick=True, seed=3, progress=False)
    return out, report


def test_plots_exist_and_are_not_empty(report_dir: tuple[Path, dict]) -> None:
    out, report = report_dir
    assert len(report["plots"]) >= 10
    for name in report["plots"]:
        assert name.endswith(".png")
        assert (out / name).stat().st_size > 1000, name
    assert sorted(p.name for p in out.glob("*.png")) == sorted(report["plots"])


def test_json_has_every_target_with_a_status(report_dir: tuple[Path, dict]) -> None:
    out, report = report_dir
    stored = json.loads((out / "validation.json").read_text(encoding="utf-8"))
    assert stored == report
    assert stored["seed"] == 3
    assert stored["quick"] is True
    assert stored["caloml_version"]
    assert set(stored["sizes"]) >= {"longitudinal", "pion_ratio", "calochallenge"}
    rows = {row["measured_key"]: row for row in stored["targets"]}
    assert len(stored["targets"]) == len(TARGETS)
    for target in TARGETS:
        row = rows[target.measured_key]
        assert row["status"] in {"pass", "fail"}
        assert row["measured"] is not None, target.name
        assert row["status"] == ("pass" if target.accepts(row["measured"]) else "fail")


# Quick mode (seed 3) measures every target on small samples: the only one its statistics miss is the gamma/pi0
# separation's fall from 10 to 100 GeV (a few hundred events per point). Any other failure is a physics regression.
QUICK_MODE_STATISTICS_LIMITED = {"gamma_pi0.max_separation_from_100gev"}


def test_the_simulator_meets_its_targets(report_dir: tuple[Path, dict]) -> None:
    _, report = report_dir
    failed = {row["measured_key"] for row in report["targets"] if row["status"] != "pass"}
    assert failed <= QUICK_MODE_STATISTICS_LIMITED, sorted(failed - QUICK_MODE_STATISTICS_LIMITED)
    assert len(report["targets"]) - len(failed) >= len(TARGETS) - len(QUICK_MODE_STATISTICS_LIMITED)


def test_markdown_has_one_row_per_target(report_dir: tuple[Path, dict]) -> None:
    out, _ = report_dir
    text = (out / "validation.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert rows[0] == "| quantity | measured | target | status |"
    assert len(rows) - 2 == len(TARGETS)
    statuses = [line.strip("|").split("|")[-1].strip() for line in rows[2:]]
    assert statuses.count("pass") >= len(TARGETS) - len(QUICK_MODE_STATISTICS_LIMITED), statuses
    assert "seed 3" in text


def test_existing_output_is_refused_and_left_untouched(tmp_path: Path) -> None:
    out = tmp_path / "v"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(OutputExistsError, match=re.escape(str(out))):
        write_validation_report(out, quick=True, seed=3, progress=False)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text(encoding="utf-8") == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v"]  # no temporary directory left behind
