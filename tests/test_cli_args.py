"""Arguments checked at the edge: seeds, output paths, memory, energies and cluster specifications."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from caloml.cli_args import (
    MAX_SEED,
    check_memory,
    format_bytes,
    machine_memory_bytes,
    non_negative_seed,
    output_directory,
    output_file,
)
from caloml.errors import CalomlError
from caloml.sim.run import MAX_ENERGY_GEV, SimulationRequest, check_simulation_memory


@pytest.mark.parametrize("text", ["0", "7", str(MAX_SEED)])
def test_seeds_from_zero_to_the_largest_are_accepted(text: str) -> None:
    assert non_negative_seed(text) == int(text)


@pytest.mark.parametrize("text", ["-1", "1.5", "seven", str(MAX_SEED + 1), ""])
def test_other_seeds_are_one_line_errors_that_argparse_lets_through(text: str) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=non_negative_seed)
    with pytest.raises(CalomlError, match="a seed must be a whole number from 0 to 4294967295"):
        parser.parse_args(["--seed", text])  # not argparse's usage error: the command's one line


def test_output_types_check_the_path_at_parse_time(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=output_file)
    parser.add_argument("--dir", type=output_directory)
    args = parser.parse_args(["--out", str(tmp_path / "new" / "x.h5"), "--dir", str(tmp_path / "d")])
    assert args.out == tmp_path / "new" / "x.h5"
    assert args.dir == tmp_path / "d"
    with pytest.raises(CalomlError, match="blocker is a file"):
        parser.parse_args(["--out", str(blocker / "x.h5")])
    with pytest.raises(CalomlError, match="is not a directory"):
        parser.parse_args(["--dir", str(blocker)])


def test_memory_beyond_the_machine_is_refused_with_the_number() -> None:
    check_memory(2**30, "a small thing", available_bytes=2**31)
    with pytest.raises(
        CalomlError, match=r"a big thing would need about 4\.0 GiB of memory; this machine has 2\.0 GiB"
    ):
        check_memory(4 * 2**30, "a big thing", available_bytes=2**31)
    assert machine_memory_bytes() > 2**28
    assert format_bytes(988 * 2**30) == "988.0 GiB"
    assert format_bytes(512) == "512.0 B"


def test_simulation_memory_grows_with_the_energy_and_the_workers() -> None:
    request = SimulationRequest("lcd-gen", "electron", 1000, 1, energy_range_gev=(500.0, 500.0))
    check_simulation_memory(request, workers=2, available_bytes=2**30)  # about 2 x 0.13 GB: fine
    with pytest.raises(
        CalomlError,
        match=r"simulating 8 x 32 showers of 500 GeV at once would need about 976\.6 MiB .* \(fewer --workers",
    ):
        check_simulation_memory(request, workers=8, available_bytes=2**29)
    with pytest.raises(CalomlError, match=r"TiB of memory"):
        SimulationRequest("lcd-gen", "electron", 10, 1, energy_range_gev=(1e9, 1e9)).resolve()
    with pytest.raises(CalomlError, match="above the simulator's range"):
        SimulationRequest("lcd-gen", "electron", 1, 1, energy_range_gev=(10.0, 2 * MAX_ENERGY_GEV)).resolve()
    assert SimulationRequest("lcd-gen", "electron", 1, 1, energy_range_gev=(10.0, MAX_ENERGY_GEV)).resolve()


VALID_CLUSTERS = [
    {"cluster": {"worker": ["localhost:2222"]}, "task": {"type": "worker", "index": 0}},
    {"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]}, "task": {"type": "worker", "index": 1}},
    {"cluster": {"chief": ["a:1"], "worker": ["b:1"], "evaluator": ["e:1"]}, "task": {"type": "evaluator", "index": 0}},
]


@pytest.mark.parametrize("value", VALID_CLUSTERS)
def test_consistent_cluster_specifications_pass(value: dict) -> None:
    from caloml.training.strategy import check_tf_config

    assert check_tf_config(value) == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "must be a JSON object"),
        ({"cluster": {"worker": ["a:1"]}}, "must be a JSON object"),
        ({"cluster": {"boss": ["a:1"]}, "task": {"type": "boss", "index": 0}}, "unknown role 'boss'"),
        ({"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}, "non-empty list"),
        ({"cluster": {"worker": ["a:port"]}, "task": {"type": "worker", "index": 0}}, "HOST:PORT"),
        ({"cluster": {"worker": ["a:70000"]}, "task": {"type": "worker", "index": 0}}, "HOST:PORT"),
        ({"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}, "needs a chief or at least one worker"),
        ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}, "runs from 0 to 1"),
        ({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": True}}, "task.index True"),
        ({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": "0"}}, "task.index '0'"),
        ({"cluster": {"worker": ["a:1"]}, "task": {"type": ["worker"], "index": 0}}, "is not a role"),
        ({"cluster": {"worker": ["a:1"]}, "task": {"index": 0}}, "task must be"),
    ],
)
def test_inconsistent_cluster_specifications_are_one_line(value: object, message: str) -> None:
    from caloml.training.strategy import check_tf_config

    with pytest.raises(CalomlError, match="TF_CONFIG is not valid") as error:
        check_tf_config(value)
    assert message in str(error.value)
    assert "\n" not in str(error.value)
