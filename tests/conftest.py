"""Shared fixtures: small synthetic LCD and CaloChallenge files written with caloml's own writers, and their TFRecords.

The events are random but shaped like the real layouts: sparse non-negative cells in GeV (a few percent occupied,
with the edge cases of the sparse encoding: an empty event, the first and the last cell of the grid), unique primary
energies (so that tests can match events across shuffles), and every optional LCD key.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from caloml.data.calochallenge import CaloChallengeReader, CaloChallengeWriter
from caloml.data.hdf5 import provenance_attrs
from caloml.data.lcd import LCDWriter

N_LCD_EVENTS = 40
N_CALOCHALLENGE_EVENTS = 30
LCD_SEED = 1234


def make_lcd_events(n: int = N_LCD_EVENTS, seed: int = 0, ecal_shape: tuple[int, ...] = (51, 51, 25)) -> dict:
    """A batch of ``n`` synthetic LCD events in GeV (every key of the layout)."""
    rng = np.random.default_rng(seed)
    ecal = np.where(rng.random((n, *ecal_shape)) < 0.03, rng.exponential(0.01, (n, *ecal_shape)), 0.0).astype(
        np.float32
    )
    ecal[0] = 0.0  # an empty event
    ecal[1 % n, 0, 0, 0] = 0.5  # the first cell of the grid
    ecal[2 % n, -1, -1, -1] = 0.25  # the last one
    hcal = np.where(rng.random((n, 11, 11, 60)) < 0.02, rng.exponential(0.05, (n, 11, 11, 60)), 0.0).astype(np.float32)
    energy = np.linspace(2.0, 500.0, n, dtype=np.float32)[rng.permutation(n)]
    ecal *= (energy / 250.0)[:, None, None, None]  # deposits from 0.1 to 40 GeV
    hcal *= rng.uniform(0.0, 0.6, n).astype(np.float32)[:, None, None, None]  # HCAL/ECAL from 0 to about 1
    opening = rng.choice(np.array([-1.0, 0.004, 0.02], dtype=np.float32), size=n)
    return {
        "ECAL": ecal,
        "HCAL": hcal,
        "energy": energy,
        "theta": rng.uniform(1.047, 2.094, n).astype(np.float32),
        "phi": rng.uniform(-np.pi, np.pi, n).astype(np.float32),
        "eta": rng.uniform(-0.5, 0.5, n).astype(np.float32),
        "pdgID": np.full(n, 11, dtype=np.int32),
        "ECAL_E": ecal.reshape(n, -1).sum(axis=1),
        "HCAL_E": hcal.reshape(n, -1).sum(axis=1),
        "openingAngle": opening,
        "conversion": rng.integers(0, 2, n).astype(np.int32),
    }


def make_calochallenge_events(n: int = N_CALOCHALLENGE_EVENTS, seed: int = 0) -> dict:
    """A batch of ``n`` synthetic CaloChallenge dataset-2 events in GeV: showers (n, 45, 16, 9), energies (n, 1)."""
    rng = np.random.default_rng(seed)
    showers = np.where(rng.random((n, 45, 16, 9)) < 0.1, rng.exponential(0.05, (n, 45, 16, 9)), 0.0)
    incident = np.exp(np.linspace(np.log(1.0), np.log(1000.0), n))[rng.permutation(n)]
    return {"incident_energies": incident.reshape(n, 1).astype(np.float32), "showers": showers.astype(np.float32)}


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide directory for the shared files (tests must not modify them)."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def lcd_events() -> dict:
    """The events of :func:`lcd_file`, in GeV."""
    return make_lcd_events(seed=LCD_SEED)


@pytest.fixture(scope="session")
def lcd_file(data_dir: Path, lcd_events: dict) -> Path:
    """A 40-event LCD file written with :class:`LCDWriter` (two appends), with a provenance seed."""
    path = data_dir / "EleEscan_RandomAngle_1_1.h5"
    with LCDWriter(path, attrs=provenance_attrs({"seed": LCD_SEED, "particle": "electron"})) as writer:
        writer.append({k: v[:25] for k, v in lcd_events.items()})
        writer.append({k: v[25:] for k, v in lcd_events.items()})
    return path


@pytest.fixture(scope="session")
def calochallenge_events() -> dict:
    """The events of :func:`calochallenge_file`, in GeV."""
    return make_calochallenge_events(seed=7)


@pytest.fixture(scope="session")
def calochallenge_file(data_dir: Path, calochallenge_events: dict) -> Path:
    """A 30-event CaloChallenge dataset-2 file written with :class:`CaloChallengeWriter`."""
    path = data_dir / "dataset_2_synthetic.hdf5"
    with CaloChallengeWriter(path, attrs=provenance_attrs({"seed": 7})) as writer:
        writer.append(calochallenge_events)
    return path


@pytest.fixture(scope="session")
def records_dir(data_dir: Path, lcd_file: Path) -> Path:
    """The LCD file converted to TFRecords in 4 shards of 10 events."""
    from caloml.data.tfrecord import convert_to_tfrecords

    out = data_dir / "tf_records" / "lcd"
    convert_to_tfrecords([lcd_file], out, shard_events=10)
    return out


@pytest.fixture(scope="session")
def calochallenge_records_dir(data_dir: Path, calochallenge_file: Path) -> Path:
    """The CaloChallenge file converted to TFRecords in 2 shards."""
    from caloml.data.tfrecord import convert_to_tfrecords

    out = data_dir / "tf_records" / "calochallenge"
    convert_to_tfrecords([calochallenge_file], out, shard_events=15)
    return out


@pytest.fixture(scope="session")
def assert_calochallenge_showers(calochallenge_file: Path) -> Callable[[dict], None]:
    """A check that a decoded batch holds every shower of the CaloChallenge file, matched by incident energy."""
    with CaloChallengeReader(calochallenge_file) as reader:
        expected = reader.read(slice(None))

    def check(batch: dict) -> None:
        order = np.argsort(np.asarray(batch["incident_energies"])[:, 0])
        reference = np.argsort(expected["incident_energies"][:, 0])
        np.testing.assert_array_equal(np.asarray(batch["showers"])[order], expected["showers"][reference])

    return check


@pytest.fixture(scope="session")
def make_lcd() -> Callable[..., dict]:
    """The factory :func:`make_lcd_events` (for tests that need their own events)."""
    return make_lcd_events


@pytest.fixture(scope="session")
def make_calochallenge() -> Callable[..., dict]:
    """The factory :func:`make_calochallenge_events`."""
    return make_calochallenge_events
