"""Transforms: each one on NumPy and TensorFlow batches, inverses, filters, and the point-cloud dequantization."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from caloml.data import MaxHcalEcalRatio, MaxOpeningAngle, MinTotalDeposit
from caloml.data.transforms import (
    CenterCrop,
    Compose,
    PowerTransform,
    ScaleEnergy,
    ToPointCloud,
    dequantize,
    split_transforms,
)


@pytest.fixture
def batch() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    ecal = np.where(rng.random((5, 51, 51, 25)) < 0.02, rng.exponential(0.02, (5, 51, 51, 25)), 0).astype(np.float32)
    ecal[0] = 0.0
    ecal[1, 50, 50, 24] = 0.9  # the last cell: dequantized points must stay below 51, 51, 25
    return {
        "ECAL": ecal,
        "energy": np.array([10.0, 50.0, 100.0, 200.0, 400.0], np.float32),
        "ECAL_E": ecal.reshape(5, -1).sum(axis=1),
        "HCAL_E": np.array([0.0, 0.5, 0.01, 3.0, 0.0], np.float32),
        "openingAngle": np.array([-1.0, 0.005, 0.02, 0.0099, 0.5], np.float32),
    }


def _tf(batch: dict[str, np.ndarray]) -> dict[str, tf.Tensor]:
    return {k: tf.constant(v) for k, v in batch.items()}


def test_power_transform_and_inverse(batch: dict) -> None:
    power = PowerTransform(0.85)
    assert repr(power) == "PowerTransform(exponent=0.85, keys=('ECAL', 'HCAL', 'showers'))"
    forward = power(batch)
    np.testing.assert_allclose(forward["ECAL"], batch["ECAL"] ** 0.85, rtol=1e-6)
    np.testing.assert_array_equal(forward["energy"], batch["energy"])  # only the cells
    np.testing.assert_allclose(power.inverse(forward)["ECAL"], batch["ECAL"], rtol=1e-5, atol=1e-12)
    forward_tf = power(_tf(batch))
    assert isinstance(forward_tf["ECAL"], tf.Tensor)
    np.testing.assert_allclose(forward_tf["ECAL"].numpy(), forward["ECAL"], rtol=1e-6)
    generated = {"ECAL": tf.constant([[-0.1, 0.5]])}  # a generator may undershoot: the inverse clips at zero
    np.testing.assert_allclose(power.inverse(generated)["ECAL"].numpy(), [[0.0, 0.5 ** (1 / 0.85)]], rtol=1e-6)
    ragged = {"ECAL/values": tf.ragged.constant([[1.0, 4.0], [9.0]])}
    np.testing.assert_allclose(PowerTransform(0.5)(ragged)["ECAL/values"].flat_values.numpy(), [1.0, 2.0, 3.0])


def test_scale_energy_and_inverse(batch: dict) -> None:
    scale = ScaleEnergy(1 / 100)
    out = scale(batch)
    np.testing.assert_allclose(out["energy"], batch["energy"] / 100)
    assert out["energy"].dtype == np.float32
    np.testing.assert_allclose(scale.inverse(out)["energy"], batch["energy"], rtol=1e-6)
    np.testing.assert_allclose(scale(_tf(batch))["energy"].numpy(), batch["energy"] / 100, rtol=1e-6)
    assert repr(scale) == "ScaleEnergy(factor=0.01, key='energy')"
    with pytest.raises(KeyError, match="incident_energies"):
        ScaleEnergy(0.001, key="incident_energies")(batch)


def test_center_crop(batch: dict) -> None:
    crop = CenterCrop(25, 25)
    out = crop(batch)
    assert out["ECAL"].shape == (5, 25, 25, 25)
    np.testing.assert_array_equal(out["ECAL"], batch["ECAL"][:, 13:38, 13:38, :])
    out_tf = crop(_tf(batch))
    np.testing.assert_array_equal(out_tf["ECAL"].numpy(), out["ECAL"])
    assert out["ECAL"][:, 12, 12].sum() == batch["ECAL"][:, 25, 25].sum()  # the central cell stays central
    with pytest.raises(ValueError, match="cannot crop"):
        CenterCrop(60, 60)(batch)
    with pytest.raises(KeyError, match="sparse output"):
        crop({"ECAL/values": tf.ragged.constant([[1.0]])})


def test_filters_on_numpy_batches(batch: dict) -> None:
    deposits = batch["ECAL"].reshape(5, -1).sum(axis=1)
    threshold = float(np.median(deposits))
    kept = MinTotalDeposit(threshold)(batch)
    np.testing.assert_array_equal(kept["energy"], batch["energy"][deposits > threshold])
    assert kept["ECAL"].shape[0] == int((deposits > threshold).sum())

    kept = MaxOpeningAngle(0.01)(batch)  # -1 (no pi0 decay) is kept, 0.02 and 0.5 are not
    np.testing.assert_array_equal(kept["openingAngle"], np.float32([-1.0, 0.005, 0.0099]))

    kept = MaxHcalEcalRatio(0.1)(batch)
    expected = batch["HCAL_E"] < 0.1 * batch["ECAL_E"]
    np.testing.assert_array_equal(kept["energy"], batch["energy"][expected])
    assert 0 < expected.sum() < 5

    with pytest.raises(KeyError, match="needs key 'HCAL_E'"):
        MaxHcalEcalRatio(0.1)({"ECAL": batch["ECAL"]})
    assert repr(MinTotalDeposit(0.2)) == "MinTotalDeposit(min_gev=0.2, key='ECAL')"


def test_filters_on_tensors(batch: dict) -> None:
    kept = MaxOpeningAngle(0.01)(_tf(batch))
    np.testing.assert_array_equal(kept["openingAngle"].numpy(), np.float32([-1.0, 0.005, 0.0099]))
    assert kept["ECAL"].shape[0] == 3
    per_event = {"openingAngle": tf.constant(0.02)}  # the pipeline calls keep() on one event's scalars
    assert not bool(MaxOpeningAngle(0.01).keep(per_event))


def test_compose_and_split() -> None:
    chain = Compose((MinTotalDeposit(0.2), Compose((PowerTransform(0.85),)), ScaleEnergy(0.01)))
    filters, values = split_transforms([chain, CenterCrop()])
    assert filters == [MinTotalDeposit(0.2)]
    assert values == [PowerTransform(0.85), ScaleEnergy(0.01), CenterCrop()]
    with pytest.raises(ValueError, match="must come before"):
        split_transforms([ScaleEnergy(0.01), MaxOpeningAngle(0.01)])
    batch = {"ECAL": np.full((2, 51, 51, 25), 0.01, np.float32), "energy": np.array([1.0, 200.0], np.float32)}
    out = chain(batch)
    np.testing.assert_allclose(out["energy"], [0.01, 2.0])


def _check_point_cloud(out: dict, cells: np.ndarray, max_points: int) -> None:
    points, mask, n_hits = (np.asarray(out[k]) for k in ("points", "mask", "n_hits"))
    assert points.shape == (len(cells), max_points, 4)
    assert points.dtype == np.float32
    for i, event in enumerate(cells):
        coords = np.argwhere(event > 0)
        assert n_hits[i] == len(coords)
        k = min(len(coords), max_points)
        assert mask[i].sum() == k
        assert mask[i, :k].all()
        np.testing.assert_array_equal(points[i, k:], 0.0)
        cell = np.floor(points[i, :k, :3]).astype(int)  # dequantized coordinates stay inside their cell
        assert (points[i, :k, :3] < cell + 1).all()
        np.testing.assert_allclose(points[i, :k, 3], np.log(event[tuple(cell.T)]), rtol=1e-6)
        energies = np.sort(event[event > 0])[::-1][:k]
        np.testing.assert_allclose(np.exp(points[i, :k, 3]), energies, rtol=1e-5)  # the most energetic, sorted
        if k:
            assert (points[i, :k, :3] - cell > 0).any()  # really dequantized


@pytest.mark.parametrize("max_points", [64, 4000])
def test_to_point_cloud(batch: dict, max_points: int) -> None:
    transform = ToPointCloud("ECAL", max_points=max_points, seed=5)
    out = transform(batch)
    assert "ECAL" not in out
    assert "energy" in out
    _check_point_cloud(out, batch["ECAL"], max_points)
    out_tf = transform(_tf(batch))
    _check_point_cloud({k: v.numpy() for k, v in out_tf.items()}, batch["ECAL"], max_points)


def test_to_point_cloud_sparse_input_and_cell_centres(batch: dict) -> None:
    cells = batch["ECAL"]
    coords = [np.argwhere(event > 0) for event in cells]
    sparse = {
        "ECAL/coords": tf.ragged.constant(
            [c.tolist() for c in coords], ragged_rank=1, inner_shape=(3,), dtype=tf.int64
        ),
        "ECAL/values": tf.ragged.constant([event[tuple(c.T)].tolist() for event, c in zip(cells, coords, strict=True)]),
    }
    centres = ToPointCloud("ECAL", max_points=100, dequantize=False)
    from_sparse = centres(sparse)
    from_dense = centres(_tf(batch))
    np.testing.assert_allclose(from_sparse["points"].numpy(), from_dense["points"].numpy(), rtol=1e-6)
    valid = from_dense["points"].numpy()[from_dense["mask"].numpy()]
    np.testing.assert_array_equal(valid[:, :3] % 1, 0.5)


def test_dequantization_never_reaches_the_next_cell() -> None:
    # in float32, x + u rounds up to x + 1 for u close to 1 once x is large (here a quarter of the draws would)
    big = float(2**22 - 1)
    points = dequantize(np.full((20000, 3), big, np.float32), np.random.default_rng(0))
    assert (points >= big).all()
    assert (points < big + 1).all()
    assert len(np.unique(points)) > 1
    coords = tf.RaggedTensor.from_row_lengths(
        tf.fill([2000, 3], tf.constant(2**22 - 1, tf.int64)), tf.ones([2000], tf.int64)
    )
    out = ToPointCloud("ECAL", max_points=1, seed=1)(
        {"ECAL/coords": coords, "ECAL/values": tf.ones_like(coords[:, :, 0], tf.float32)}
    )
    position = out["points"].numpy()[:, 0, :3]
    assert (position >= big).all()
    assert (position < big + 1).all()
