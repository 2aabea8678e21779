"""The split record ``test_events.json``: one schema, written and read back, and one-line errors when malformed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from caloml.data.reconstruction_split import make_split_record
from caloml.data.reconstruction_tasks import get_task
from caloml.data.split_record import SPLIT_FILE, SplitSource, read_split_record, write_split_record
from caloml.errors import CalomlError
from caloml.evaluate.reconstruction_sources import read_test_events
from caloml.tasks.triforce import read_split


def _record(tmp_path: Path) -> dict[str, Any]:
    sources = [
        SplitSource(str(tmp_path / "photon.h5"), np.array([7, 2, 2, 9]), "hdf5", 20, "photon", 0),
        SplitSource(str(tmp_path / "mixed"), np.array([], dtype=np.int64), "tfrecords", 5),
    ]
    record = make_split_record(
        get_task("gamma-vs-pi0"), fractions=(0.6, 0.2, 0.2), seed=3, cuts=["a cut"], sources=sources, resample="cms"
    )
    write_split_record(tmp_path, record)
    return dict(json.loads((tmp_path / SPLIT_FILE).read_text()))


def test_written_record_reads_back_the_same_everywhere(tmp_path: Path) -> None:
    content = _record(tmp_path)
    assert content["format"] == "caloml-triforce-split"
    assert content["version"] == 1
    assert content["sources"][0]["test_indices"] == [2, 7, 9]  # sorted, unique
    assert content["sources"][0]["n_test"] == 3
    assert [c["pdgID"] for c in content["classes"]] == [22, 111]
    back = read_split_record(tmp_path)
    assert back.to_json() == content
    assert back.resample == "cms"
    assert back.task == "gamma-vs-pi0"
    # the task's reader and the evaluation's read the same schema
    split = read_split(tmp_path)
    np.testing.assert_array_equal(split["sources"][0]["test_indices"], [2, 7, 9])
    evaluated = read_test_events(tmp_path)
    assert [s.format for s in evaluated] == ["hdf5", "tfrecords"]
    np.testing.assert_array_equal(evaluated[0].indices, [2, 7, 9])
    assert evaluated[0].expected_pdg == 22
    assert evaluated[0].run_resample == {str(tmp_path / SPLIT_FILE): "cms"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("sources"), r"malformed, needs a non-empty list 'sources'"),
        (lambda r: r["sources"][0].pop("test_indices"), r"sources\[0\]: 'test_indices' must be a list of integers"),
        (lambda r: r["sources"][1].update(test_indices="abc"), r"sources\[1\]: 'test_indices' must be a list"),
        (lambda r: r["sources"][0].pop("path"), r"sources\[0\]: malformed, needs 'path'"),
        (lambda r: r["sources"][0].update(n_events="20"), r"'n_events' must be a non-negative integer"),
        (lambda r: r.update(task=3), r"'task' must be a string"),
        (lambda r: r.update(resample="lhc"), r"unknown resample 'lhc'"),
        (lambda r: r["sources"][0].update(particle="muon"), r"unknown particle 'muon'"),
    ],
)
def test_malformed_record_is_one_line_error_naming_the_file(tmp_path: Path, change: Any, message: str) -> None:
    content = _record(tmp_path)
    change(content)
    (tmp_path / SPLIT_FILE).write_text(json.dumps(content))
    for read in (read_split, read_test_events):
        with pytest.raises(CalomlError, match=message) as error:
            read(tmp_path)
        assert str(tmp_path / SPLIT_FILE) in str(error.value)
        assert "\n" not in str(error.value)


def test_a_file_that_is_not_json_is_one_line_error(tmp_path: Path) -> None:
    (tmp_path / SPLIT_FILE).write_text("{'sources': [")
    with pytest.raises(CalomlError, match=r"test_events\.json: not readable JSON") as error:
        read_split(tmp_path)
    assert "\n" not in str(error.value)
