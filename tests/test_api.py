"""The Python API: in-memory events give the same batches as the TFRecord pipeline; the packages export their names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from caloml.data import MinTotalDeposit, PowerTransform, ScaleEnergy, dataset_from_events
from caloml.data.lcd import LCDReader
from caloml.data.pipeline import make_dataset
from caloml.data.tfrecord import convert_to_tfrecords
from caloml.errors import DataError


@pytest.fixture(scope="module")
def lcd_events_and_records(lcd_file: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """The 40 events of the LCD file as its reader gives them, and their TFRecords in one shard."""
    with LCDReader(lcd_file) as reader:
        events = reader.read(slice(None))
    records = tmp_path_factory.mktemp("in_memory") / "records"
    convert_to_tfrecords([lcd_file], records, shard_events=1000)
    return events, records


@pytest.mark.parametrize(
    "transforms",
    [(), (MinTotalDeposit(10.0), PowerTransform(0.85), ScaleEnergy(1 / 100))],
    ids=["plain", "filter-power-scale"],
)
def test_in_memory_batches_equal_the_tfrecord_batches(lcd_events_and_records: tuple[dict, Path], transforms) -> None:
    events, records = lcd_events_and_records
    from_records = list(
        make_dataset(records, global_batch_size=16, shuffle=False, transforms=list(transforms)).as_numpy_iterator()
    )
    in_memory = list(dataset_from_events(events, batch_size=16, transforms=list(transforms)).as_numpy_iterator())
    assert [len(b["energy"]) for b in in_memory] == [len(b["energy"]) for b in from_records]
    if transforms:
        assert sum(len(b["energy"]) for b in in_memory) < 40, "the filter must reject some events"
    for ours, theirs in zip(in_memory, from_records, strict=True):
        assert set(ours) == set(theirs)
        for key in theirs:
            assert ours[key].dtype == theirs[key].dtype, key
            np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)


def test_keys_shuffle_and_user_errors(lcd_events_and_records: tuple[dict, Path]) -> None:
    events, _ = lcd_events_and_records
    dataset = dataset_from_events(events, batch_size=8, keys=["ECAL", "energy"], shuffle=True, seed=3)
    batches = list(dataset.as_numpy_iterator())
    assert set(batches[0]) == {"ECAL", "energy"}
    assert batches[0]["ECAL"].shape == (8, 51, 51, 25)
    energies = np.concatenate([b["energy"] for b in batches])
    assert not np.array_equal(energies, events["energy"])
    np.testing.assert_array_equal(np.sort(energies), np.sort(events["energy"]))
    with pytest.raises(DataError, match="no key 'mtheta2'"):
        dataset_from_events(events, batch_size=8, keys=["mtheta2"])
    with pytest.raises(DataError, match="same number"):
        dataset_from_events({"ECAL": events["ECAL"], "energy": events["energy"][:3]}, batch_size=8)
    bad = np.array(events["energy"])
    bad[2] = np.nan
    with pytest.raises(DataError, match="'energy': event 2"):
        dataset_from_events({"energy": bad}, batch_size=8)


def test_the_packages_export_the_names_their_docs_mention() -> None:
    code = (
        "import sys\n"
        "import caloml, caloml.sim, caloml.data, caloml.export, caloml.generate, caloml.evaluate, caloml.training\n"
        "from caloml.sim import SimulationRequest, simulate_events, simulate_file, LAYOUTS, PARTICLES\n"
        "from caloml.export import export_gan, export_triforce, export_pointflow, export_pyramid, export_crystal\n"
        "from caloml.generate import generate_showers, generate_pointflow_file, generate_pyramid_file\n"
        "assert caloml.sim.__doc__ and 'simulate_events' in caloml.sim.__doc__\n"
        "print('tensorflow' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "False", "importing the packages must not import TensorFlow"
    import caloml.models
    import caloml.training

    for name in ("GAN3D", "PointFlowVAE", "CalorimeterPyramid", "CrystalVAEWGAN", "TriforceDNN", "BDTClassifier"):
        assert name in caloml.models.__all__
        assert getattr(caloml.models, name).__name__ == name
    assert callable(caloml.training.train)
    assert callable(dataset_from_events)
