"""Directories appear whole or not at all: :func:`caloml.atomic_files.atomic_directory` and the report directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from caloml.atomic_files import atomic_directory
from caloml.errors import OutputExistsError
from caloml.report_directory import report_dir


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def test_a_directory_is_installed_whole_and_replaces_the_old_one(tmp_path: Path) -> None:
    out = tmp_path / "records"
    with atomic_directory(out) as tmp:
        (tmp / "a.txt").write_text("first")
        assert not out.exists()  # nothing is visible before the block ends
    assert (out / "a.txt").read_text() == "first"
    assert out.stat().st_mode & 0o777 != 0o700  # not the private mode of mkdtemp
    with atomic_directory(out) as tmp:
        (tmp / "b.txt").write_text("second")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]  # the old content is gone, not merged
    assert _siblings(out) == []  # no temporary or set-aside directory is left


def test_a_failure_leaves_the_old_directory_and_no_temporary(tmp_path: Path) -> None:
    out = tmp_path / "report"
    out.mkdir()
    (out / "old.txt").write_text("kept")

    def write_half(tmp: Path) -> None:
        (tmp / "new.txt").write_text("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError), atomic_directory(out) as tmp:
        write_half(tmp)
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]

    def refuse() -> None:
        raise OutputExistsError("appeared meanwhile")

    with pytest.raises(OutputExistsError), atomic_directory(out, check=refuse) as tmp:
        (tmp / "new.txt").write_text("whole")
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    assert _siblings(out) == []


def test_a_report_directory_refuses_a_non_empty_output_without_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "evaluation"
    out.mkdir()  # an empty directory is replaced
    with report_dir(out, overwrite=False) as tmp:
        (tmp / "metrics.json").write_text("{}")
    assert (out / "metrics.json").exists()
    with pytest.raises(OutputExistsError, match="pass --overwrite"), report_dir(out, overwrite=False):
        pass
    with report_dir(out, overwrite=True) as tmp:
        (tmp / "report.html").write_text("<html></html>")
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]
    assert _siblings(out) == []
