"""Output paths checked before any work, failed writes as one line, and atomic writes that leave nothing behind."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

import caloml.atomic_files
import caloml.data.hdf5
from caloml.atomic_files import TEMPORARY_MARKER, atomic_write_json, atomic_write_text, temporary_name
from caloml.data.lcd import LCDWriter
from caloml.errors import CalomlError, OutputExistsError
from caloml.output_paths import OutputWriteError, check_output_path, write_errors_as_one_line, write_failure


def test_an_output_under_a_regular_file_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    blocker = tmp_path / "existing.h5"
    blocker.write_bytes(b"data")
    for path in (blocker / "x.h5", blocker / "sub" / "deeper" / "x.h5"):
        with pytest.raises(OutputWriteError, match=r"existing\.h5 is a file, not a directory"):
            check_output_path(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.h5"]


def test_missing_parents_that_can_be_created_are_accepted_but_not_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c.h5"
    assert check_output_path(path) == path
    assert check_output_path(str(tmp_path / "a" / "runs"), directory=True) == tmp_path / "a" / "runs"
    assert list(tmp_path.iterdir()) == []


def test_an_existing_output_of_the_wrong_kind_or_without_overwrite(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "file.h5").write_text("x")
    with pytest.raises(OutputWriteError, match="is a directory; an output file was expected"):
        check_output_path(tmp_path / "dir")
    with pytest.raises(OutputWriteError, match="is not a directory"):
        check_output_path(tmp_path / "file.h5", directory=True)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        check_output_path(tmp_path / "file.h5", overwrite=False)
    assert check_output_path(tmp_path / "file.h5", overwrite=True) == tmp_path / "file.h5"
    assert check_output_path(tmp_path / "file.h5") == tmp_path / "file.h5"  # None: the command decides


def test_an_unwritable_directory_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode))
    with pytest.raises(OutputWriteError, match="locked is not writable"):
        check_output_path(locked / "new" / "x.h5")  # the nearest existing ancestor must be writable


@pytest.mark.parametrize(
    ("number", "fragment"),
    [(errno.ENOSPC, "no space left"), (errno.EDQUOT, "quota"), (errno.EFBIG, "ulimit -f"), (errno.EROFS, "read-only")],
)
def test_failed_writes_are_recognised_by_errno(number: int, fragment: str) -> None:
    explanation = write_failure(OSError(number, os.strerror(number)))
    assert explanation is not None
    assert fragment in explanation
    assert write_failure(OSError(errno.ENOENT, "missing")) is None
    assert write_failure(ValueError("No space left on device")) is None  # only OS and TensorFlow errors count


def test_tensorflow_errors_are_recognised_by_their_message_and_name_the_output() -> None:
    resource_exhausted = type("ResourceExhaustedError", (Exception,), {"__module__": "tensorflow.python.framework"})
    temporary = f"/data/.records.{TEMPORARY_MARKER}-host-123-abcd.tmp/shard-0.tfrecord.gz"
    with pytest.raises(OutputWriteError) as error, write_errors_as_one_line():
        raise resource_exhausted(f"{temporary}; No space left on device")
    assert str(error.value) == "/data/records/shard-0.tfrecord.gz: cannot write: no space left on the device"


def test_a_wrapped_failure_is_found_through_the_cause() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/out/x.keras")
        except OSError as inner:
            raise RuntimeError("saving failed") from inner
    except RuntimeError as outer:
        with (
            pytest.raises(OutputWriteError, match=r"^/out/x\.keras: cannot write: no space left"),
            write_errors_as_one_line(),
        ):
            raise outer from outer.__cause__
    with pytest.raises(ZeroDivisionError), write_errors_as_one_line():  # other errors pass untouched
        _ = 1 / 0
    with pytest.raises(OSError, match="no such"), write_errors_as_one_line("out"):
        raise OSError(errno.ENOENT, "no such file")


def test_an_atomic_write_on_a_full_disk_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = atomic_write_json(tmp_path / "summary.json", {"old": True})

    class FullFile:
        def __init__(self, handle: object) -> None:
            self.handle = handle

        def write(self, data: str) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __enter__(self) -> FullFile:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()  # type: ignore[attr-defined]

    monkeypatch.setattr(caloml.atomic_files, "open", lambda *a, **k: FullFile(open(*a, **k)), raising=False)  # noqa: SIM115
    with (
        pytest.raises(OutputWriteError, match=r"summary\.json: cannot write: no space left"),
        write_errors_as_one_line(out),
    ):
        atomic_write_text(out, "new content")
    assert out.read_text() == '{\n  "old": true\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_an_hdf5_writer_that_fails_to_write_discards_its_file_and_closes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(caloml.data.hdf5, "_write_deflated_events", full)
    out = tmp_path / "showers.h5"
    events = {"ECAL": np.zeros((2, 51, 51, 25), np.float32), "energy": np.array([10.0, 20.0])}
    with (
        pytest.raises(OutputWriteError, match=r"showers\.h5: cannot write it: no space left"),
        LCDWriter(out) as writer,
    ):
        writer.append(events)
    assert list(tmp_path.iterdir()) == []
    open_files = [i for i in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE) if TEMPORARY_MARKER in i.name.decode()]
    assert open_files == []  # nothing left for HDF5 to flush at exit


def test_temporaries_carry_the_host_and_the_process_id(tmp_path: Path) -> None:
    name = temporary_name(tmp_path / "x.h5")
    assert name.startswith(f".x.h5.{TEMPORARY_MARKER}-")
    assert f"-{os.getpid()}-" in name
    assert isinstance(OutputWriteError("x"), CalomlError)
