"""Resampling to ATLAS-like and CMS-like granularity: energy conservation, footprints, depth, projection, CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from caloml.data.lcd import LCDReader, LCDWriter
from caloml.data.resampling import (
    DETECTORS,
    Resample,
    overlap_matrix,
    resample_ecal,
    resampling_map,
)
from caloml.errors import CalomlError
from caloml.geometry import CLIC_ECAL


def random_showers(n: int, shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cells = rng.exponential(size=(n, *shape)) * (rng.random((n, *shape)) < 0.3)
    return cells.astype(np.float32)


@pytest.mark.parametrize("detector", ["atlas", "cms"])
@pytest.mark.parametrize("shape", [(51, 51, 25), (25, 25, 25)])
def test_energy_conserved_shape_kept_and_non_negative(detector: str, shape: tuple[int, int, int]) -> None:
    cells = random_showers(5, shape)
    out = resample_ecal(cells, detector)
    assert out.shape == cells.shape
    assert out.dtype == np.float32
    assert (out >= 0).all()
    np.testing.assert_allclose(out.sum(axis=(1, 2, 3)), cells.sum(axis=(1, 2, 3)), rtol=1e-6)
    assert not np.allclose(out, cells)  # it did something
    exact = resample_ecal(cells.astype(np.float64), detector)  # float64 in, float64 out: conservation to rounding
    np.testing.assert_allclose(exact.sum(axis=(1, 2, 3)), cells.sum(axis=(1, 2, 3), dtype=np.float64), rtol=1e-12)


def test_coarse_cell_sizes_scale_with_the_moliere_radius() -> None:
    cms, atlas = DETECTORS["cms"], DETECTORS["atlas"]
    assert cms.pitch_cells(0.0175) == pytest.approx((0.0175 / 1.959) / (0.003 / 0.9327))
    assert cms.pitch_cells(0.0175) == pytest.approx(2.777, abs=1e-3)
    assert atlas.pitch_cells(0.025) == pytest.approx(0.8595, abs=1e-3)
    assert cms.pitch_mm(0.0175) == pytest.approx(2.777 * CLIC_ECAL.cell_mm, abs=0.01)
    overlap = overlap_matrix(51, 2.777)
    np.testing.assert_allclose(overlap.sum(axis=1), 1.0)  # every CLIC cell is covered once
    # the coarse cell at the window centre is centred there: [25.5 - 1.3885, 25.5 + 1.3885]
    central = overlap[:, np.argmax(overlap[25])]
    np.testing.assert_allclose(central[24:27], [1.3885 - 0.5, 1.0, 1.3885 - 0.5], atol=1e-3)
    assert central.sum() == pytest.approx(2.777, abs=1e-3)


def test_single_cell_spreads_exactly_over_its_coarse_cells() -> None:
    shape = (25, 25, 25)
    cells = np.zeros((1, *shape))
    cells[0, 12, 12, 10] = 7.0  # the window centre: inside the central CMS-like cell (2.78 cells wide)
    out = resample_ecal(cells, "cms")[0]
    footprint = np.argwhere(out.sum(axis=2) > 0)
    # the central coarse cell covers CLIC cells 11..13 (edges 12.5 +- 1.39) in x and y, and nothing else
    assert {tuple(p) for p in footprint} == {(i, j) for i in (11, 12, 13) for j in (11, 12, 13)}
    assert out.sum() == pytest.approx(7.0)
    # uniform by overlap: the central column gets 1 / 2.777 of each axis, the edge ones 0.889 / 2.777
    column = out.sum(axis=2)
    pitch = DETECTORS["cms"].pitch_cells(0.0175)
    assert column[12, 12] == pytest.approx(7.0 / pitch**2)
    assert column[11, 12] == pytest.approx(7.0 * ((pitch - 1) / 2) / pitch**2)
    # a cell cut by a coarse boundary spreads over the footprints of both coarse cells it overlaps
    cells = np.zeros((1, *shape))
    cells[0, 16, 12, 10] = 1.0  # x cell [16, 17) is cut by the coarse boundary at 12.5 + 1.5 x 2.777 = 16.67
    overlap_x = overlap_matrix(25, pitch)
    touched = np.flatnonzero(overlap_x[16] > 0)
    expected_x = set(np.flatnonzero(overlap_x[:, touched].sum(axis=1) > 0))
    out = resample_ecal(cells, "cms")[0]
    assert set(np.flatnonzero(out.sum(axis=(1, 2)) > 0)) == expected_x
    assert len(touched) == 2


def test_cms_has_one_longitudinal_profile() -> None:
    cells = random_showers(3, (25, 25, 25), seed=1).astype(np.float64)
    out = resample_ecal(cells, "cms")
    shares = CLIC_ECAL.stack.layer_x0 / CLIC_ECAL.stack.layer_x0.sum()  # uniform in radiation lengths
    columns = out.sum(axis=3, keepdims=True)
    np.testing.assert_allclose(out, columns * shares, rtol=1e-10, atol=1e-15)
    # the thick-tungsten back layers get twice the share of the front ones
    assert shares[20] / shares[0] == pytest.approx(CLIC_ECAL.stack.layer_x0[20] / CLIC_ECAL.stack.layer_x0[0])


def test_atlas_keeps_its_three_samplings_apart() -> None:
    cells = np.zeros((1, 25, 25, 25))
    cells[0, 12, 12, 2] = 1.0  # strips (layers 0-4)
    cells[0, 12, 12, 23] = 2.0  # back sampling (layers 22-24)
    out = resample_ecal(cells, "atlas")[0]
    per_layer = out.sum(axis=(0, 1))
    assert per_layer[:5].sum() == pytest.approx(1.0)
    assert per_layer[5:22].sum() == pytest.approx(0.0)
    assert per_layer[22:].sum() == pytest.approx(2.0)
    # the strips are 3.4 CLIC cells wide in phi (x) and 0.11 in eta (y): the deposit spreads along x; along y only
    # the two strips cut by the CLIC cell's edges leak a little into the neighbours
    strips = out[:, :, :5].sum(axis=2)
    assert np.count_nonzero(strips.sum(axis=1) > 1e-12) >= 3
    assert strips.sum(axis=1)[12] < 0.5
    assert strips.sum(axis=0)[12] > 0.95
    # with snapped boundaries the sub-cell strips vanish: no leakage along eta at all
    snapped = resample_ecal(cells, "atlas", snap=True)[0, :, :, :5].sum(axis=2)
    assert snapped.sum(axis=0)[12] == pytest.approx(1.0)


@pytest.mark.parametrize("detector", ["atlas", "cms"])
def test_snapped_grid_is_a_projection(detector: str) -> None:
    cells = random_showers(3, (51, 51, 25), seed=2).astype(np.float64)
    once = resample_ecal(cells, detector, snap=True)
    np.testing.assert_allclose(resample_ecal(once, detector, snap=True), once, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(once.sum(axis=(1, 2, 3)), cells.sum(axis=(1, 2, 3)), rtol=1e-12)
    # the paper's overlap grid is a projection too where its boundaries fall on CLIC boundaries (pitch 3 cells)
    projection = overlap_matrix(51, 3.0)
    p = (projection / projection.sum(axis=0)) @ projection.T
    np.testing.assert_allclose(p @ p, p, atol=1e-12)


def test_overlap_map_is_symmetric_and_conserving() -> None:
    mapping = resampling_map("atlas", (51, 51, 25))
    for matrix in (*mapping.x, *mapping.y):
        np.testing.assert_allclose(matrix, matrix.T, atol=1e-12)
        np.testing.assert_allclose(matrix.sum(axis=0), 1.0, atol=1e-12)
    for share in mapping.depth:
        assert share.sum() == pytest.approx(1.0)
    assert mapping.layers == ((0, 5), (5, 22), (22, 25))


def test_transform_numpy_and_tensorflow_agree() -> None:
    import tensorflow as tf

    cells = random_showers(4, (25, 25, 25), seed=3)
    batch = {"ECAL": cells, "energy": np.ones(4, np.float32)}
    transform = Resample("cms")
    numpy_out = transform(batch)
    tf_out = transform({k: tf.constant(v) for k, v in batch.items()})
    np.testing.assert_allclose(np.asarray(tf_out["ECAL"]), numpy_out["ECAL"], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(numpy_out["energy"], batch["energy"])
    dataset = tf.data.Dataset.from_tensor_slices(batch).batch(2).map(Resample("atlas").tf)
    mapped = np.concatenate([np.asarray(b["ECAL"]) for b in dataset])
    np.testing.assert_allclose(mapped, resample_ecal(cells, "atlas"), rtol=1e-4, atol=1e-6)


def test_bad_detector_and_shapes_are_one_line_errors() -> None:
    with pytest.raises(CalomlError, match="unknown detector 'lhcb'"):
        resample_ecal(np.zeros((1, 25, 25, 25)), "lhcb")
    with pytest.raises(CalomlError, match=r"shape \(X, Y, 25\)"):
        resample_ecal(np.zeros((1, 25, 25, 24)), "cms")
    with pytest.raises(CalomlError, match=r"\(N, X, Y, 25\)"):
        resample_ecal(np.zeros((25, 25, 25)), "cms")
    with pytest.raises(CalomlError, match="unknown detector"):
        Resample("lhcb")


def test_resample_command_writes_the_same_layout(tmp_path: Path) -> None:
    events = {
        "ECAL": random_showers(6, (25, 25, 25), seed=4),
        "energy": np.linspace(10, 60, 6).astype(np.float32),
        "ECAL_E": np.zeros(6, np.float32),
    }
    events["ECAL_E"] = events["ECAL"].sum(axis=(1, 2, 3))
    source, target = tmp_path / "in.h5", tmp_path / "out.h5"
    with LCDWriter(source) as writer:
        writer.append(events)
    command = [sys.executable, "-m", "caloml.data", "resample", str(source), str(target), "--detector", "atlas"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    with LCDReader(target) as reader:
        out = reader.read(slice(None))
    np.testing.assert_allclose(out["ECAL"], resample_ecal(events["ECAL"], "atlas"), rtol=1e-6)
    np.testing.assert_allclose(out["ECAL_E"], events["ECAL_E"], rtol=1e-6)
    np.testing.assert_allclose(out["ECAL"].sum(axis=(1, 2, 3)), events["ECAL_E"], rtol=1e-5)
    with h5py.File(target) as file:
        assert "atlas" in file.attrs["caloml_config"]
    again = subprocess.run(command, capture_output=True, text=True, check=False)
    assert again.returncode == 2
    assert again.stderr.strip().startswith("caloml: error:")
    assert "exists" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_resample_in_the_tfrecord_pipeline(records_dir: Path, lcd_events: dict) -> None:
    from caloml.data.pipeline import make_dataset
    from caloml.data.transforms import CenterCrop

    dataset = make_dataset(
        records_dir, global_batch_size=8, shuffle=False, transforms=[Resample("cms"), CenterCrop(25, 25)]
    )
    batches = list(dataset.as_numpy_iterator())
    cells = np.concatenate([b["ECAL"] for b in batches])
    energy = np.concatenate([b["energy"] for b in batches])
    expected = CenterCrop(25, 25).numpy({"ECAL": resample_ecal(lcd_events["ECAL"], "cms")})["ECAL"]
    assert len(np.unique(lcd_events["energy"])) == len(energy) == len(expected)
    mine, reference = np.argsort(energy), np.argsort(lcd_events["energy"])
    np.testing.assert_allclose(energy[mine], lcd_events["energy"][reference], rtol=1e-6)
    np.testing.assert_allclose(cells[mine], expected[reference], rtol=1e-4, atol=1e-7)
