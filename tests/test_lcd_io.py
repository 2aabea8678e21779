"""LCD layout: write -> read round trips in GeV, the 50 x GeV stored units, streaming, validation, atomic writes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from caloml.data.calochallenge import CaloChallengeReader
from caloml.data.hdf5 import READERS, detect_layout, open_reader, read_attrs
from caloml.data.lcd import LCDReader, LCDWriter, particle_from_filename, pdg_id_from_filename
from caloml.errors import DataError, OutputExistsError
from caloml.units import LCD_STORED_PER_GEV

LCD_SEED = 1234  # as in conftest.py
N_LCD_EVENTS = 40


def _write_raw(path: Path, **datasets: np.ndarray) -> Path:
    with h5py.File(path, "w") as file:
        for key, value in datasets.items():
            file.create_dataset(key, data=value)
    return path


def test_round_trip_in_gev(lcd_file: Path, lcd_events: dict) -> None:
    with LCDReader(lcd_file) as reader:
        assert len(reader) == N_LCD_EVENTS
        events = reader.read(slice(None))
        assert reader.event_shapes["ECAL"] == (51, 51, 25)
        assert reader.geometry_name == "clic-ecal"
    assert set(events) == set(lcd_events)
    for key, expected in lcd_events.items():
        assert events[key].shape == expected.shape, key
        np.testing.assert_allclose(events[key], expected, rtol=1e-6, atol=0, err_msg=key)
    assert events["ECAL"].dtype == np.float32
    assert events["pdgID"].dtype == np.int32


def test_cells_are_stored_as_50_times_gev(lcd_file: Path, lcd_events: dict) -> None:
    with h5py.File(lcd_file, "r") as file:
        stored = file["ECAL"][:]
        assert file["ECAL"].dtype == np.float32
        assert file["ECAL"].chunks == (1, 51, 51, 25)
        assert file["ECAL"].maxshape == (None, 51, 51, 25)
        assert file["ECAL"].compression == "gzip"
        np.testing.assert_allclose(stored, lcd_events["ECAL"] * LCD_STORED_PER_GEV, rtol=1e-6)
        np.testing.assert_allclose(file["energy"][:], lcd_events["energy"])  # scalars stay in GeV
        # the window sums are stored like the cells
        np.testing.assert_allclose(file["ECAL_E"][:], lcd_events["ECAL_E"] * LCD_STORED_PER_GEV, rtol=1e-6)
        attrs = read_attrs(file)
    assert attrs["caloml_layout"] == "lcd"
    assert attrs["caloml_config"] == {"seed": LCD_SEED, "particle": "electron"}
    assert "caloml_version" in attrs


def test_iter_chunks_streams_the_whole_file(lcd_file: Path) -> None:
    with LCDReader(lcd_file, chunk_events=16) as reader:
        chunks = list(reader.iter_chunks())
        everything = reader.read(slice(None))
    assert [len(c["energy"]) for c in chunks] == [16, 16, 8]
    for key in everything:
        np.testing.assert_array_equal(np.concatenate([c[key] for c in chunks]), everything[key])


def test_read_indices_in_any_order(lcd_file: Path) -> None:
    with LCDReader(lcd_file, keys=["ECAL", "energy"]) as reader:
        everything = reader.read(slice(None))
        picked = reader.read([5, 2, 5, -1])
        one = reader.read(3)
        strided = reader.read(slice(1, 10, 4))
    assert set(picked) == {"ECAL", "energy"}
    np.testing.assert_array_equal(picked["ECAL"], everything["ECAL"][[5, 2, 5, N_LCD_EVENTS - 1]])
    np.testing.assert_array_equal(one["energy"], everything["energy"][[3]])
    np.testing.assert_array_equal(strided["energy"], everything["energy"][1:10:4])


def test_reads_float64_cells_column_energies_and_missing_optional_keys(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cells = np.where(rng.random((3, 51, 51, 25)) < 0.01, rng.random((3, 51, 51, 25)), 0.0)  # float64, stored units
    path = _write_raw(tmp_path / "ChPiEscan_1_2.h5", ECAL=cells, energy=np.array([[10.0], [20.0], [30.0]]))
    with open_reader(path) as reader:
        assert isinstance(reader, LCDReader)
        events = reader.read(slice(None))
        assert reader.pdg_id == 211
    assert events["energy"].shape == (3,)
    assert events["ECAL"].dtype == np.float32
    np.testing.assert_allclose(events["ECAL"], cells / LCD_STORED_PER_GEV, rtol=1e-6)
    np.testing.assert_array_equal(events["pdgID"], [211, 211, 211])  # from the file name
    assert set(events) == {"ECAL", "energy", "pdgID"}


def test_cropped_ecal(tmp_path: Path, make_lcd: Callable) -> None:
    events = make_lcd(4, ecal_shape=(25, 25, 25))
    with LCDWriter(tmp_path / "rec.h5") as writer:
        writer.append(events)
    with LCDReader(tmp_path / "rec.h5") as reader:
        assert reader.event_shapes["ECAL"] == (25, 25, 25)
        assert reader.geometry_name == "clic-ecal-crop25x25"
        assert reader.particle is None
        assert "pdgID" in reader.keys


@pytest.mark.parametrize(
    ("name", "particle", "pdg"),
    [
        ("EleEscan_RandomAngle_1_1.h5", "Ele", 11),
        ("GammaEscan_3_4.h5", "Gamma", 22),
        ("Pi0Escan_RandomAngle_2_9.h5", "Pi0", 111),
        ("/data/ChPiEscan_1_1.h5", "ChPi", 211),
        ("Ele_VarAngleMeas_100_200_005.h5", None, None),
        ("showers.h5", None, None),
    ],
)
def test_particle_from_filename(name: str, particle: str | None, pdg: int | None) -> None:
    assert particle_from_filename(name) == particle
    assert pdg_id_from_filename(name) == pdg


def test_writer_refuses_an_existing_output_and_overwrites_atomically(tmp_path: Path, make_lcd: Callable) -> None:
    path = tmp_path / "out.h5"
    path.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match=r"out\.h5"):
        LCDWriter(path)
    assert path.read_bytes() == b"precious"
    events = make_lcd(3)
    with LCDWriter(path, overwrite=True) as writer:
        writer.append(events)
        assert path.read_bytes() == b"precious"  # nothing replaced before the end
    with LCDReader(path) as reader:
        assert len(reader) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]


def test_writer_leaves_nothing_on_failure(tmp_path: Path, make_lcd: Callable) -> None:
    events = make_lcd(3)

    def write_then_fail() -> None:
        with LCDWriter(tmp_path / "out.h5") as writer:
            writer.append(events)
            raise RuntimeError("simulation failed")

    with pytest.raises(RuntimeError):
        write_then_fail()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("key", "index", "value", "message"),
    [
        ("energy", 2, np.nan, "key 'energy': event 2 has NaN"),
        ("ECAL", 1, -1.0, "key 'ECAL': event 1 has a negative energy"),
        ("theta", 0, np.inf, "key 'theta': event 0 has NaN or infinite"),
    ],
)
def test_writer_rejects_bad_values(
    tmp_path: Path, make_lcd: Callable, key: str, index: int, value: float, message: str
) -> None:
    events = make_lcd(3)
    events[key].reshape(3, -1)[index, 0] = value  # a view: sets the first value of the event
    with pytest.raises(DataError, match=message), LCDWriter(tmp_path / "bad.h5") as writer:
        writer.append(events)
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_wrong_shapes(tmp_path: Path, make_lcd: Callable) -> None:
    events = make_lcd(2)
    events["ECAL"] = events["ECAL"][:, :50]
    with pytest.raises(DataError, match=r"key 'ECAL' has shape \(2, 50, 51, 25\)"), LCDWriter(tmp_path / "x.h5") as w:
        w.append(events)


def test_reader_validation_errors(tmp_path: Path) -> None:
    cells = np.zeros((3, 51, 51, 25), np.float32)
    energy = np.array([1.0, 2.0, 3.0], np.float32)
    cases = {
        "nokey.h5": (dict(ECAL=cells), "missing required key 'energy'"),
        "shape.h5": (dict(ECAL=cells[:, :, :50], energy=energy), r"key 'ECAL' has shape \(3, 51, 50, 25\)"),
        "nan.h5": (dict(ECAL=cells, energy=np.array([1.0, np.nan, 3.0])), "key 'energy': event 1 has NaN"),
        "neg.h5": (dict(ECAL=cells, energy=np.array([1.0, 2.0, -3.0])), "key 'energy': event 2 has a negative"),
        "count.h5": (dict(ECAL=cells, energy=energy[:2]), "disagree on the number of events"),
    }
    for name, (datasets, message) in cases.items():
        path = _write_raw(tmp_path / name, **datasets)
        with pytest.raises(DataError, match=message) as error:
            LCDReader(path)
        assert str(error.value).startswith(str(path)), name
        assert "\n" not in str(error.value)


def test_reader_finds_bad_cells_while_streaming(tmp_path: Path) -> None:
    cells = np.zeros((5, 51, 51, 25), np.float32)
    cells[3, 10, 10, 10] = np.nan
    path = _write_raw(tmp_path / "cells.h5", ECAL=cells, energy=np.ones(5, np.float32))
    with LCDReader(path, chunk_events=2) as reader:  # the structure is fine; cells are checked as they are read
        with pytest.raises(DataError, match="key 'ECAL': event 3 has NaN"):
            list(reader.iter_chunks())
        with pytest.raises(DataError, match="key 'ECAL': event 3 has NaN"):
            reader.read([4, 3])


def test_truncated_and_missing_files(tmp_path: Path, lcd_file: Path) -> None:
    truncated = tmp_path / "truncated.h5"
    data = lcd_file.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"truncated\.h5: cannot open it as HDF5") as error:
        LCDReader(truncated)
    assert "\n" not in str(error.value)
    with pytest.raises(DataError, match=r"missing\.h5: no such file"):
        LCDReader(tmp_path / "missing.h5")
    with pytest.raises(DataError, match="is a directory"):
        LCDReader(tmp_path)


def test_the_layouts_register_their_readers(tmp_path: Path, lcd_file: Path, calochallenge_file: Path) -> None:
    assert READERS["lcd"] is LCDReader
    assert READERS["calochallenge"] is CaloChallengeReader
    assert detect_layout(["ECAL", "energy"]) == "lcd"
    assert detect_layout(["incident_energies", "showers"]) == "calochallenge"
    assert detect_layout(["something"]) is None
    with open_reader(lcd_file) as lcd, open_reader(calochallenge_file) as calochallenge:
        assert (type(lcd), type(calochallenge)) == (LCDReader, CaloChallengeReader)
    unknown = tmp_path / "unknown.h5"
    with h5py.File(unknown, "w") as handle:
        handle["cells"] = np.zeros((2, 3), np.float32)
    with pytest.raises(DataError, match="unknown layout: neither ") as error:
        open_reader(unknown)
    assert "an LCD file (key 'ECAL')" in str(error.value)
    assert "a CaloChallenge file (key 'showers')" in str(error.value)
    assert str(error.value).endswith("keys found: cells")
