"""CaloChallenge layout: GeV in memory, MeV in the file, radial bin fastest, datasets recognized by voxel count."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from caloml.data.calochallenge import CaloChallengeReader, CaloChallengeWriter
from caloml.data.hdf5 import open_reader, read_attrs
from caloml.errors import DataError, OutputExistsError
from caloml.geometry import CALOCHALLENGE_2
from caloml.units import MEV_PER_GEV


def test_round_trip_in_gev(calochallenge_file: Path, calochallenge_events: dict) -> None:
    with CaloChallengeReader(calochallenge_file, chunk_events=8) as reader:
        assert reader.dataset.name == "2"
        assert reader.geometry is CALOCHALLENGE_2
        assert reader.event_shapes == {"incident_energies": (1,), "showers": (45, 16, 9)}
        events = reader.read(slice(None))
        chunks = list(reader.iter_chunks())
    assert [len(c["showers"]) for c in chunks] == [8, 8, 8, 6]
    for key, expected in calochallenge_events.items():
        assert events[key].dtype == np.float32
        assert events[key].shape == expected.shape
        np.testing.assert_allclose(events[key], expected, rtol=1e-6, err_msg=key)


def test_file_is_mev_flat_with_the_radial_bin_fastest(calochallenge_file: Path, calochallenge_events: dict) -> None:
    with h5py.File(calochallenge_file, "r") as file:
        showers, incident = file["showers"][:], file["incident_energies"][:]
        assert file["showers"].dtype == np.float32
        assert file["showers"].compression == "gzip"
        assert file["showers"].maxshape == (None, 6480)
        attrs = read_attrs(file)
    assert showers.shape == (30, 6480)
    assert incident.shape == (30, 1)
    np.testing.assert_allclose(incident, calochallenge_events["incident_energies"] * MEV_PER_GEV, rtol=1e-6)
    gev = calochallenge_events["showers"]
    # voxel (layer 3, alpha 5, radius 7) of event 4 sits at 3 * 16 * 9 + 5 * 9 + 7 in the flat row
    assert showers[4, 3 * 144 + 5 * 9 + 7] == pytest.approx(gev[4, 3, 5, 7] * MEV_PER_GEV, rel=1e-6)
    np.testing.assert_allclose(showers.reshape(30, 45, 16, 9), gev * MEV_PER_GEV, rtol=1e-6)
    assert attrs["caloml_layout"] == "calochallenge"
    assert attrs["caloml_config"] == {"seed": 7}


@pytest.mark.parametrize(
    ("voxels", "name", "shape"),
    [(368, "1-photons", (368,)), (533, "1-pions", (533,)), (6480, "2", (45, 16, 9)), (40500, "3", (45, 50, 18))],
)
def test_datasets_recognized_by_voxel_count(tmp_path: Path, voxels: int, name: str, shape: tuple) -> None:
    path = tmp_path / "cc.h5"
    with h5py.File(path, "w") as file:  # as in the public files: float64 possible, (N,) energies accepted
        file["incident_energies"] = np.array([1000.0, 2000.0])
        file["showers"] = np.full((2, voxels), 3.0)
    with open_reader(path) as reader:
        assert isinstance(reader, CaloChallengeReader)
        assert reader.dataset.name == name
        events = reader.read(slice(None))
    assert events["showers"].shape == (2, *shape)
    np.testing.assert_allclose(events["incident_energies"], [[1.0], [2.0]])
    np.testing.assert_allclose(events["showers"], 0.003)


def test_unknown_voxel_count(tmp_path: Path) -> None:
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as file:
        file["incident_energies"] = np.ones((2, 1))
        file["showers"] = np.ones((2, 100))
    with pytest.raises(DataError, match="'showers' has 100 voxels per event, not a CaloChallenge data set"):
        CaloChallengeReader(path)


def test_reader_errors(tmp_path: Path) -> None:
    path = tmp_path / "neg.h5"
    with h5py.File(path, "w") as file:
        file["incident_energies"] = np.array([[1.0], [-2.0]])
        file["showers"] = np.zeros((2, 6480))
    with pytest.raises(DataError, match="key 'incident_energies': event 1 has a negative energy"):
        CaloChallengeReader(path)
    path = tmp_path / "nokey.h5"
    with h5py.File(path, "w") as file:
        file["showers"] = np.zeros((2, 6480))
    with pytest.raises(DataError, match="missing required key 'incident_energies'"):
        CaloChallengeReader(path)


def test_writer_takes_flat_or_shaped_showers(tmp_path: Path, make_calochallenge: Callable[..., dict]) -> None:
    events = make_calochallenge(4)
    with CaloChallengeWriter(tmp_path / "a.h5") as writer:
        writer.append({"incident_energies": events["incident_energies"][:, 0], "showers": events["showers"]})
        writer.append({"incident_energies": events["incident_energies"], "showers": events["showers"].reshape(4, -1)})
        assert writer.dataset is not None
        assert writer.dataset.name == "2"
    with CaloChallengeReader(tmp_path / "a.h5") as reader:
        back = reader.read(slice(None))
    np.testing.assert_allclose(back["showers"], np.concatenate([events["showers"]] * 2), rtol=1e-6)


def test_writer_validation(tmp_path: Path, make_calochallenge: Callable[..., dict]) -> None:
    events = make_calochallenge(3)
    events["showers"][2, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="key 'showers': event 2 has NaN"), CaloChallengeWriter(tmp_path / "b.h5") as w:
        w.append(events)
    with pytest.raises(DataError, match="1000 voxels"), CaloChallengeWriter(tmp_path / "c.h5") as w:
        w.append({"incident_energies": np.ones((2, 1)), "showers": np.ones((2, 10, 100))})
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "d.h5").touch()
    with pytest.raises(OutputExistsError):
        CaloChallengeWriter(tmp_path / "d.h5")


def test_inspect(calochallenge_file: Path) -> None:
    from caloml.data.inspect import inspect_path

    text = inspect_path(calochallenge_file)
    assert "layout:    calochallenge (calochallenge-2), 30 events" in text
    assert "dataset:   CaloChallenge 2, showers per event (45, 16, 9)" in text
    assert "energy:    1 .. 1000 GeV (incident_energies)" in text
    assert "showers            (30, 6480)" in text
