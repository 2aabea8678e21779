"""TFRecord conversion: the sparse encoding, metadata and checksums, atomic output, verification of the shards."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import tensorflow as tf

from caloml import __version__
from caloml.data.example_encoding import ENCODING_NAME, ENCODING_VERSION, encode_events
from caloml.data.lcd import LCDWriter
from caloml.data.tfrecord import (
    METADATA_FILE,
    convert_to_tfrecords,
    decode_batch,
    measure_encoding_sizes,
    read_metadata,
    shard_paths,
    verify,
)
from caloml.errors import DataError, OutputExistsError


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_metadata(records_dir: Path, lcd_file: Path) -> None:
    metadata = json.loads((records_dir / METADATA_FILE).read_text())
    assert metadata == read_metadata(records_dir)
    assert metadata["layout"] == "lcd"
    assert metadata["geometry"] == "clic-ecal"
    assert metadata["units"] == "GeV"
    assert metadata["encoding"]["name"] == ENCODING_NAME
    assert metadata["encoding"]["version"] == ENCODING_VERSION
    assert metadata["encoding"]["compression"] == "GZIP"
    assert metadata["arrays"]["ECAL"] == {"shape": [51, 51, 25], "dtype": "float32", "geometry": "clic-ecal"}
    assert metadata["arrays"]["HCAL"]["shape"] == [11, 11, 60]
    assert metadata["scalars"]["energy"] == {"shape": [], "dtype": "float32"}
    assert metadata["scalars"]["pdgID"]["dtype"] == "int32"
    assert metadata["n_events"] == 40
    assert [s["n_events"] for s in metadata["shards"]] == [10, 10, 10, 10]
    assert [s["file"] for s in metadata["shards"]] == [f"shard-{i:05d}-of-00004.tfrecord.gz" for i in range(4)]
    for shard in metadata["shards"]:
        assert _sha256(records_dir / shard["file"]) == shard["sha256"]
    (source,) = metadata["sources"]
    assert source["path"] == str(lcd_file.resolve())
    assert source["sha256"] == _sha256(lcd_file)
    assert source["n_events"] == 40
    assert metadata["config"] == {"seed": 1234, "particle": "electron"}
    assert metadata["seed"] == 1234
    assert metadata["caloml_version"] == __version__
    assert metadata["created"].endswith("+00:00")
    assert sorted(p.name for p in records_dir.iterdir()) == sorted(
        [METADATA_FILE] + [s["file"] for s in metadata["shards"]]
    )


def test_encoding_round_trip_and_wire_format(make_lcd: Callable[..., dict]) -> None:
    events = make_lcd(6)
    events["ECAL"][3] = 0.0  # empty events in the middle and at the end of the batch
    events["ECAL"][5] = 0.0
    events["ECAL"][4, -1, -1, -1] = 0.75
    events["pdgID"][1] = -211  # negative integers are 10-byte varints
    scalars = ["energy", "pdgID", "openingAngle"]
    records = encode_events(events, ["ECAL", "HCAL"], scalars)
    example = tf.train.Example.FromString(records[1])  # the hand-written wire format is a valid Example
    feature = example.features.feature
    flat = events["ECAL"][1].reshape(-1)
    np.testing.assert_array_equal(np.cumsum(feature["ECAL/delta"].int64_list.value), np.flatnonzero(flat))
    np.testing.assert_array_equal(np.array(feature["ECAL/values"].float_list.value, np.float32), flat[flat > 0])
    assert feature["ECAL/last"].int64_list.value == [np.flatnonzero(flat)[-1]]
    assert feature["pdgID"].int64_list.value == [-211]
    assert feature["energy"].float_list.value == [pytest.approx(events["energy"][1])]
    metadata = {
        "arrays": {"ECAL": {"shape": [51, 51, 25]}, "HCAL": {"shape": [11, 11, 60]}},
        "scalars": {"energy": {"shape": [], "dtype": "float32"}, "pdgID": {"shape": [], "dtype": "int32"},
                    "openingAngle": {"shape": [], "dtype": "float32"}},
    }  # fmt: skip
    dense = decode_batch(tf.constant(records), metadata)
    for key in ["ECAL", "HCAL", *scalars]:
        np.testing.assert_array_equal(dense[key].numpy(), events[key], err_msg=key)
    assert dense["pdgID"].dtype == tf.int32
    sparse = decode_batch(tf.constant(records), metadata, output="sparse")
    for i in range(6):
        coords = sparse["ECAL/coords"][i].numpy()
        np.testing.assert_array_equal(coords, np.argwhere(events["ECAL"][i] > 0))
        np.testing.assert_array_equal(sparse["ECAL/values"][i].numpy(), events["ECAL"][i][tuple(coords.T)])


def test_verify(records_dir: Path, tmp_path: Path) -> None:
    assert verify(records_dir) == {"n_events": 40, "n_shards": 4}
    corrupt = tmp_path / "corrupt"
    shutil.copytree(records_dir, corrupt)
    shard = shard_paths(corrupt)[2]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"shard-00002-of-00004\.tfrecord\.gz: truncated or corrupt") as error:
        verify(corrupt)
    assert "\n" not in str(error.value)
    shard.write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(DataError, match="shard-00002"):
        verify(corrupt)
    shard.unlink()
    with pytest.raises(DataError, match="missing shard"):
        verify(corrupt)
    (corrupt / METADATA_FILE).unlink()
    with pytest.raises(DataError, match=r"missing metadata\.json"):
        read_metadata(corrupt)


def test_output_is_atomic_and_never_overwritten_silently(lcd_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "records"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(OutputExistsError, match="records: output exists"):
        convert_to_tfrecords([lcd_file], out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    metadata = convert_to_tfrecords([lcd_file], out, overwrite=True, shard_events=40)
    assert len(metadata["shards"]) == 1
    assert not (out / "keep.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records"]  # no temporary left behind


def test_failure_leaves_no_output(tmp_path: Path, make_lcd: Callable[..., dict]) -> None:
    events = make_lcd(6)
    path = tmp_path / "GammaEscan_1_1.h5"
    with LCDWriter(path) as writer:
        writer.append(events)
    with h5py.File(path, "r+") as file:  # corrupt a cell behind the writer's back: found while streaming
        file["ECAL"][4, 1, 1, 1] = np.nan
    with pytest.raises(DataError, match="key 'ECAL': event 4 has NaN"):
        convert_to_tfrecords([path], tmp_path / "out", chunk_events=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["GammaEscan_1_1.h5"]


def test_several_sources_are_mixed(tmp_path: Path, make_lcd: Callable[..., dict]) -> None:
    paths = []
    for i, n in enumerate((12, 6)):
        events = make_lcd(n, seed=i)
        if i == 1:
            del events["openingAngle"]  # keys missing from one source are dropped
            del events["pdgID"]  # derived from the file name: 211
            events["energy"] += 1000.0
        paths.append(tmp_path / f"{['Ele', 'ChPi'][i]}Escan_1_{i}.h5")
        with LCDWriter(paths[-1]) as writer:
            writer.append(events)
    metadata = convert_to_tfrecords(paths, tmp_path / "mixed", shard_events=9, chunk_events=3)
    assert metadata["n_events"] == 18
    assert [s["n_events"] for s in metadata["shards"]] == [9, 9]
    assert "openingAngle" not in metadata["scalars"]
    assert [s["name"] for s in metadata["sources"]] == [p.name for p in paths]
    first_shard = tf.data.TFRecordDataset(str(shard_paths(tmp_path / "mixed")[0]), compression_type="GZIP")
    batch = decode_batch(tf.constant(list(first_shard.as_numpy_iterator())), metadata)
    pdg = set(batch["pdgID"].numpy().tolist())
    assert pdg == {11, 211}  # each shard holds both sources, in proportion


def test_calochallenge_records(
    calochallenge_records_dir: Path, assert_calochallenge_showers: Callable[[dict], None]
) -> None:
    metadata = read_metadata(calochallenge_records_dir)
    assert metadata["layout"] == "calochallenge"
    assert metadata["geometry"] == "calochallenge-2"
    assert metadata["arrays"]["showers"]["shape"] == [45, 16, 9]
    assert metadata["scalars"]["incident_energies"]["shape"] == [1]
    assert verify(calochallenge_records_dir)["n_events"] == 30
    records = tf.data.TFRecordDataset([str(p) for p in shard_paths(calochallenge_records_dir)], compression_type="GZIP")
    batch = decode_batch(tf.constant(list(records.as_numpy_iterator())), metadata)
    assert_calochallenge_showers(batch)


def test_measure_encoding_sizes(lcd_file: Path) -> None:
    sizes = measure_encoding_sizes(lcd_file, n_events=20)
    assert set(sizes) == {
        "dense_tfrecord",
        "sparse_tfrecord",
        "sparse_delta_tfrecord",
        "hdf5",
        "raw_float32",
        "occupancy",
    }
    assert sizes["raw_float32"] == 4 * (51 * 51 * 25 + 11 * 11 * 60)
    assert 0.0 < sizes["occupancy"] < 0.05
    assert sizes["sparse_delta_tfrecord"] < sizes["sparse_tfrecord"] < sizes["raw_float32"]
    assert sizes["sparse_delta_tfrecord"] < sizes["dense_tfrecord"]


def test_uncompressed_shards(lcd_file: Path, tmp_path: Path) -> None:
    metadata = convert_to_tfrecords([lcd_file], tmp_path / "plain", shard_events=20, compression="NONE")
    assert metadata["encoding"]["compression"] == "NONE"
    assert [s["file"] for s in metadata["shards"]] == ["shard-00000-of-00002.tfrecord", "shard-00001-of-00002.tfrecord"]
    assert verify(tmp_path / "plain") == {"n_events": 40, "n_shards": 2}


def test_raw_bytes_layout_round_trip_and_wire_format(make_lcd: Callable[..., dict]) -> None:
    """Version 2: indices and energies as raw little-endian bytes; dense and sparse decoding give the events back."""
    events = make_lcd(6)
    events["ECAL"][3] = 0.0  # empty events in the middle and at the end of the batch
    events["ECAL"][5] = 0.0
    events["ECAL"][4, -1, -1, -1] = 0.75  # the last cell: index 65024 needs all 16 bits
    scalars = ["energy", "pdgID", "openingAngle"]
    records = encode_events(events, ["ECAL", "HCAL"], scalars, version=2)
    feature = tf.train.Example.FromString(records[4]).features.feature
    flat = events["ECAL"][4].reshape(-1)
    (index_bytes,) = feature["ECAL/indices_raw"].bytes_list.value
    (value_bytes,) = feature["ECAL/values_raw"].bytes_list.value
    np.testing.assert_array_equal(np.frombuffer(index_bytes, "<u2"), np.flatnonzero(flat))
    np.testing.assert_array_equal(np.frombuffer(value_bytes, "<f4"), flat[flat > 0])
    assert "ECAL/delta" not in feature
    assert feature["ECAL/sum"].float_list.value == [pytest.approx(flat.sum(dtype=np.float64), rel=1e-6)]
    metadata = {
        "arrays": {"ECAL": {"shape": [51, 51, 25]}, "HCAL": {"shape": [11, 11, 60]}},
        "scalars": {"energy": {"shape": [], "dtype": "float32"}, "pdgID": {"shape": [], "dtype": "int32"},
                    "openingAngle": {"shape": [], "dtype": "float32"}},
    }  # fmt: skip
    dense = decode_batch(tf.constant(records), metadata)
    for key in ["ECAL", "HCAL", *scalars]:
        np.testing.assert_array_equal(dense[key].numpy(), events[key], err_msg=key)
    sparse = decode_batch(tf.constant(records), metadata, output="sparse")
    for i in range(6):
        coords = sparse["ECAL/coords"][i].numpy()
        np.testing.assert_array_equal(coords, np.argwhere(events["ECAL"][i] > 0))
        np.testing.assert_array_equal(sparse["ECAL/values"][i].numpy(), events["ECAL"][i][tuple(coords.T)])


def test_int32_indices_beyond_65536_cells_and_a_batch_mixing_both_layouts() -> None:
    rng = np.random.default_rng(3)
    cells = np.where(rng.random((4, 70, 40, 30)) < 0.01, rng.random((4, 70, 40, 30)), 0.0).astype(np.float32)
    cells[1, -1, -1, -1] = 2.0  # index 83999 > 65535
    events = {"big": cells}
    new = encode_events(events, ["big"], [], version=2)
    feature = tf.train.Example.FromString(new[1]).features.feature
    (index_bytes,) = feature["big/indices_raw"].bytes_list.value
    assert np.frombuffer(index_bytes, "<i4")[-1] == 70 * 40 * 30 - 1
    old = encode_events(events, ["big"], [], version=1)
    metadata = {"arrays": {"big": {"shape": [70, 40, 30]}}, "scalars": {}}
    mixed = [new[0], old[1], new[2], old[3]]
    np.testing.assert_array_equal(decode_batch(tf.constant(mixed), metadata)["big"].numpy(), cells)
    sparse = decode_batch(tf.constant(mixed), metadata, output="sparse")
    for i in range(4):
        np.testing.assert_array_equal(sparse["big/coords"][i].numpy(), np.argwhere(cells[i] > 0))


@pytest.mark.parametrize(
    ("compression", "asked", "version"), [("GZIP", None, 1), ("NONE", None, 2), ("GZIP", 2, 2), ("NONE", 1, 1)]
)
def test_both_layouts_decode_to_the_same_events(
    lcd_file: Path, lcd_events: dict, tmp_path: Path, compression: str, asked: int | None, version: int
) -> None:
    """GZIP shards default to version 1 (index differences), uncompressed ones to version 2 (raw bytes); either
    can be asked for, and every directory decodes to the same events."""
    from caloml.data.pipeline import make_dataset

    out = tmp_path / "records"
    metadata = convert_to_tfrecords([lcd_file], out, shard_events=20, compression=compression, encoding_version=asked)
    assert read_metadata(out)["encoding"]["version"] == version == metadata["encoding"]["version"]
    assert verify(out) == {"n_events": 40, "n_shards": 2}
    dataset = make_dataset(out, global_batch_size=40, shuffle=False, repeat=False, keys=["ECAL", "energy"])
    batch = next(iter(dataset))
    order = np.argsort(batch["energy"].numpy())
    np.testing.assert_allclose(  # the file stores 50 x GeV: float32 rounding
        batch["ECAL"].numpy()[order], lcd_events["ECAL"][np.argsort(lcd_events["energy"])], rtol=1e-6
    )
    with pytest.raises(ValueError, match="encoding_version"):
        convert_to_tfrecords([lcd_file], tmp_path / "v3", encoding_version=3)


def test_raw_bytes_shards_with_bad_indices_fail_verification(
    records_dir: Path, tmp_path: Path, make_lcd: Callable[..., dict]
) -> None:
    corrupt = tmp_path / "bad"
    shutil.copytree(records_dir, corrupt)
    metadata = read_metadata(corrupt)
    events = make_lcd(2)
    records = encode_events(events, list(metadata["arrays"]), list(metadata["scalars"]), version=2)
    example = tf.train.Example.FromString(records[1])
    index_bytes = example.features.feature["ECAL/indices_raw"].bytes_list.value[0]
    swapped = np.frombuffer(index_bytes, "<u2")[::-1].tobytes()  # decreasing indices
    example.features.feature["ECAL/indices_raw"].bytes_list.value[0] = swapped
    shard = shard_paths(corrupt, metadata)[0]
    with tf.io.TFRecordWriter(str(shard), tf.io.TFRecordOptions(compression_type="GZIP")) as writer:
        writer.write(example.SerializeToString())
    with pytest.raises(DataError, match="inconsistent"):
        verify(corrupt)
