"""tf.data pipelines: HDF5 -> TFRecords -> dense batches give the same events; sharding; filters; transforms."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from caloml.data import MaxHcalEcalRatio, MaxOpeningAngle, MinTotalDeposit
from caloml.data.lcd import LCDReader
from caloml.data.pipeline import make_dataset, make_distributed_dataset, per_replica_batch_size
from caloml.data.tfrecord import METADATA_FILE, shard_paths
from caloml.data.transforms import CenterCrop, PowerTransform, ScaleEnergy, ToPointCloud
from caloml.errors import DataError


def _collect(dataset: tf.data.Dataset) -> dict[str, np.ndarray]:
    batches = list(dataset.as_numpy_iterator())
    return {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}


def _by_energy(events: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    order = np.argsort(events["energy"])
    return {k: v[order] for k, v in events.items()}


@pytest.fixture(scope="module")
def reference(lcd_file: Path) -> dict[str, np.ndarray]:
    """The events as the HDF5 reader gives them (GeV float32), sorted by their unique energies."""
    with LCDReader(lcd_file) as reader:
        return _by_energy(reader.read(slice(None)))


def test_dense_pipeline_gives_the_hdf5_events(records_dir: Path, reference: dict) -> None:
    dataset = make_dataset(records_dir, global_batch_size=16, shuffle=False)
    batches = list(dataset.as_numpy_iterator())
    assert [len(b["energy"]) for b in batches] == [16, 16, 8]
    assert batches[0]["ECAL"].shape == (16, 51, 51, 25)
    assert batches[0]["ECAL"].dtype == np.float32
    assert batches[0]["HCAL"].shape == (16, 11, 11, 60)
    assert batches[0]["pdgID"].dtype == np.int32
    events = _by_energy(_collect(dataset))
    assert set(events) == set(reference)
    for key in reference:
        np.testing.assert_array_equal(events[key], reference[key], err_msg=key)


def test_shuffle_changes_the_order_not_the_events(records_dir: Path, reference: dict) -> None:
    first = _collect(make_dataset(records_dir, global_batch_size=8, seed=1))["energy"]
    second = _collect(make_dataset(records_dir, global_batch_size=8, seed=2))["energy"]
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(np.sort(first), reference["energy"])


def test_input_context_shards_files_and_batches_per_replica(records_dir: Path, reference: dict) -> None:
    seen = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline_id, num_replicas_in_sync=2
        )
        assert per_replica_batch_size(8, context) == 4
        batches = list(make_dataset(records_dir, global_batch_size=8, input_context=context).as_numpy_iterator())
        assert {len(b["energy"]) for b in batches} == {4}
        seen.append(np.concatenate([b["energy"] for b in batches]))
    assert not set(seen[0]) & set(seen[1])  # disjoint
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), reference["energy"])  # covering


def test_fewer_files_than_pipelines_warns_and_still_splits(records_dir: Path, reference: dict) -> None:
    seen = []
    for pipeline_id in range(8):
        context = tf.distribute.InputContext(num_input_pipelines=8, input_pipeline_id=pipeline_id)
        with pytest.warns(UserWarning, match="4 shard files for 8 input pipelines"):
            dataset = make_dataset(records_dir, global_batch_size=8, input_context=context)
        seen.append(_collect(dataset)["energy"])
    assert sum(len(s) for s in seen) == 40
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), reference["energy"])


@pytest.mark.parametrize(
    ("event_filter", "expected"),
    [
        (MinTotalDeposit(10.0), lambda r: r["ECAL"].reshape(40, -1).sum(axis=1) > 10.0),
        (MaxOpeningAngle(0.01), lambda r: r["openingAngle"] < 0.01),
        (MaxHcalEcalRatio(0.1), lambda r: r["HCAL_E"] < 0.1 * r["ECAL_E"]),
        (MaxHcalEcalRatio(0.1, hcal_key="HCAL/sum", ecal_key="ECAL/sum"), None),
    ],
    ids=["deposit", "opening-angle", "hcal-ecal", "hcal-ecal-sums"],
)
def test_filters_act_per_event_before_batching(records_dir: Path, reference: dict, event_filter, expected) -> None:
    if expected is None:
        sums = {k: reference[k].reshape(40, -1).sum(axis=1) for k in ("ECAL", "HCAL")}
        keep = sums["HCAL"] < 0.1 * sums["ECAL"]
    else:
        keep = expected(reference)
    assert 0 < keep.sum() < 40, "the test data must exercise the filter"
    batches = list(make_dataset(records_dir, global_batch_size=5, transforms=[event_filter]).as_numpy_iterator())
    sizes = [len(b["energy"]) for b in batches]
    assert sorted(sizes)[1:] == [5] * (len(sizes) - 1)  # filtered before batching: full batches but one
    energies = np.sort(np.concatenate([b["energy"] for b in batches]))
    np.testing.assert_array_equal(energies, reference["energy"][keep])


def test_value_transforms_after_batching(records_dir: Path, reference: dict) -> None:
    transforms = [MinTotalDeposit(1.0), PowerTransform(0.85), ScaleEnergy(1 / 100), CenterCrop(25, 25)]
    batches = list(
        make_dataset(records_dir, global_batch_size=64, shuffle=False, transforms=transforms).as_numpy_iterator()
    )
    (batch,) = batches
    keep = reference["ECAL"].reshape(40, -1).sum(axis=1) > 1.0
    order = np.argsort(batch["energy"])
    assert batch["ECAL"].shape == (keep.sum(), 25, 25, 25)
    np.testing.assert_allclose(batch["energy"][order], reference["energy"][keep] / 100, rtol=1e-6)
    cropped = reference["ECAL"][keep][:, 13:38, 13:38] ** np.float32(0.85)
    np.testing.assert_allclose(batch["ECAL"][order], cropped, rtol=1e-6)


def test_sparse_output_and_point_clouds(records_dir: Path, reference: dict) -> None:
    dataset = make_dataset(
        records_dir,
        global_batch_size=40,
        shuffle=False,
        output="sparse",
        transforms=[ToPointCloud("ECAL", max_points=512, seed=3, keep_source=True)],
    )
    batch = next(iter(dataset))
    assert batch["points"].shape == (40, 512, 4)
    order = np.argsort(batch["energy"].numpy())
    n_hits = batch["n_hits"].numpy()[order]
    np.testing.assert_array_equal(n_hits, (reference["ECAL"] > 0).reshape(40, -1).sum(axis=1))
    i = int(order[5])
    coords = batch["ECAL/coords"][i].numpy()
    np.testing.assert_array_equal(coords, np.argwhere(reference["ECAL"][5] > 0))
    points = batch["points"].numpy()[i][batch["mask"].numpy()[i]]
    cells = np.floor(points[:, :3]).astype(int)
    assert {tuple(c) for c in cells} <= {tuple(c) for c in coords}


def test_calochallenge_pipeline(
    calochallenge_records_dir: Path, assert_calochallenge_showers: Callable[[dict], None]
) -> None:
    batch = next(iter(make_dataset(calochallenge_records_dir, global_batch_size=30, shuffle=False)))
    assert batch["showers"].shape == (30, 45, 16, 9)
    assert batch["incident_energies"].shape == (30, 1)
    assert_calochallenge_showers(batch)


def test_repeat_and_drop_remainder(records_dir: Path) -> None:
    dataset = make_dataset(records_dir, global_batch_size=16, repeat=True, drop_remainder=True)
    assert dataset.element_spec["ECAL"].shape == (16, 51, 51, 25)
    assert len(list(dataset.take(5))) == 5  # more than one epoch


def test_distributed_dataset(records_dir: Path) -> None:
    strategy = tf.distribute.get_strategy()  # the default strategy: one replica
    distributed = make_distributed_dataset(strategy, records_dir, global_batch_size=8, shuffle=False)
    batch = next(iter(distributed))
    assert batch["ECAL"].shape == (8, 51, 51, 25)


def test_missing_metadata_shards_or_keys(records_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such TFRecord directory"):
        make_dataset(tmp_path / "nothing", global_batch_size=4)
    broken = tmp_path / "broken"
    shutil.copytree(records_dir, broken)
    shard_paths(broken)[1].unlink()
    with pytest.raises(DataError, match=r"shard-00001-of-00004\.tfrecord\.gz: missing shard"):
        make_dataset(broken, global_batch_size=4)
    (broken / METADATA_FILE).unlink()
    with pytest.raises(DataError, match=r"missing metadata\.json"):
        make_distributed_dataset(tf.distribute.get_strategy(), broken, global_batch_size=4)
    with pytest.raises(DataError, match="needs 'incident_energies/sum', not in the records"):
        make_dataset(records_dir, global_batch_size=4, transforms=[MinTotalDeposit(1.0, key="incident_energies")])


def test_benchmark_figures(lcd_file: Path, records_dir: Path) -> None:
    from caloml.bench.pipeline import benchmark_pipeline

    figures = benchmark_pipeline(lcd_file, records_dir, batch_size=8, n_events=16, warmup_batches=1)
    for key in ("pipeline_showers_per_s", "h5py_showers_per_s", "speedup", "uncompressed_showers_per_s"):
        assert figures[key] > 0, key
    assert figures["bytes_per_shower_records"] > 0
    assert figures["bytes_per_shower_sparse_delta_tfrecord"] < figures["bytes_per_shower_sparse_tfrecord"]


def test_keys_decode_only_what_is_asked(records_dir: Path, reference: dict) -> None:
    dataset = make_dataset(records_dir, global_batch_size=16, shuffle=False, keys=["ECAL", "energy"])
    events = _collect(dataset)
    assert set(events) == {"ECAL", "energy"}
    got, want = _by_energy(events), _by_energy(reference)
    np.testing.assert_allclose(got["ECAL"], want["ECAL"], rtol=1e-6)
    with pytest.raises(DataError, match="no key 'mtheta_typo'"):
        make_dataset(records_dir, global_batch_size=16, keys=["ECAL", "mtheta_typo"])


def test_same_seed_same_order(records_dir: Path) -> None:
    def energies(seed: int) -> np.ndarray:
        dataset = make_dataset(records_dir, global_batch_size=8, shuffle=True, seed=seed, keys=["energy"])
        return np.concatenate([b["energy"] for b in dataset.as_numpy_iterator()])

    first = energies(5)
    np.testing.assert_array_equal(first, energies(5))
    assert not np.array_equal(first, energies(6))
