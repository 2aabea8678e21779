"""``python -m caloml.evaluate precision``: bfloat16 variants of a 3DGAN generator against float32, shower by shower.

The random-weight generator tests the plumbing: every variant is compared with float32 on the same noise, the
float32 tail is the one the generator ships with, a tail from the first layer is float32 itself (no change beyond
float32 rounding), and the report is written with the check's seed.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pytest
from random_gan import random_theta_gan

from caloml.evaluate.__main__ import main as evaluate_main
from caloml.evaluate.precision_sensitivity import precision_sensitivity
from caloml.models.gan3d_generator import FLOAT32_TAIL_FROM


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return random_theta_gan(seed=3)


def test_every_variant_is_compared_on_the_same_showers(model) -> None:  # type: ignore[no-untyped-def]
    boundaries = ("none", FLOAT32_TAIL_FROM, "conditions_and_noise")
    record = precision_sensitivity(model, 4, seed=2, draws=1, boundaries=boundaries)
    assert record["shipped_tail"] == "batchnorm_4"
    assert [entry["float32_from"] for entry in record["bfloat16"]] == list(boundaries)
    everywhere, shipped, from_first = record["bfloat16"]
    for entry in (everywhere, shipped, *record["weight_draws"]):
        for key in ("energy_change", "energy_change_error", "hits_change", "hits_change_error", "ms_per_shower"):
            assert math.isfinite(entry[key]), key
        assert abs(entry["energy_change"]) < 0.1  # bfloat16 rounding, not another shower
    assert everywhere["energy_change"] != 0.0  # bfloat16 really computed
    # float32 from the first layer on: the float32 generator (the first convolution keeps its guarded form, a
    # permutation of the same sums: float32 rounding only)
    assert abs(from_first["energy_change"]) < 1e-5
    assert from_first["hits_change"] == 0.0
    assert record["weight_draws"][0]["energy_change"] != 0.0  # the weights were moved


def test_the_command_line_writes_the_report(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model.save(tmp_path / "gan.keras")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = evaluate_main(
            [
                *("precision", "--model", str(tmp_path / "gan.keras"), "--out", str(tmp_path / "out")),
                *("-n", "2", "--draws", "0", "--seed", "5"),
            ]
        )
    assert status == 0
    record = json.loads((tmp_path / "out" / "precision.json").read_text())
    assert record["seed"] == 5
    assert record["n_showers"] == 2
    assert record["weight_draws"] == []
    assert record["model"]["model_file"] == str(tmp_path / "gan.keras")
    assert "batchnorm_4 (shipped)" in stdout.getvalue()
