"""HDF5 machinery shared by the layout readers and writers (:mod:`caloml.data.lcd`, :mod:`caloml.data.calochallenge`).

* Error translation: a missing, truncated or corrupt file (h5py raises ``OSError``, ``RuntimeError`` or ``KeyError``)
  becomes a one-line :class:`caloml.errors.DataError` naming the file (and key).
* :class:`HDF5EventReader`: lazy, validated, chunked access to the per-event datasets of a file; subclasses say which
  keys are required, which arrays are calorimeter cells and how stored units convert to GeV.
* :class:`HDF5EventWriter`: atomic writes (a temporary file in the destination directory, ``os.replace`` at the end,
  removed on failure), resizable gzip datasets, provenance attributes on the root group.
* :func:`register_reader`, :func:`open_reader` / :func:`detect_layout`: the layouts' readers register themselves;
  the reader of a file is picked from its keys. See ``docs/data.md``.
"""

from __future__ import annotations

import json
import os
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import h5py
import numpy as np

import caloml
from caloml.atomic_files import new_temporary_file
from caloml.data.checks import check_event_counts, check_values, format_shape
from caloml.errors import CalomlError, DataError, OutputExistsError
from caloml.output_paths import OutputWriteError, write_failure

__all__ = [
    "DEFAULT_GZIP_LEVEL",
    "READERS",
    "HDF5EventReader",
    "HDF5EventWriter",
    "detect_layout",
    "hdf5_errors",
    "open_hdf5",
    "open_reader",
    "provenance_attrs",
    "read_attrs",
    "register_reader",
]

# gzip level of the cell datasets. Measured with LCDWriter on this project's 2-core machine: 256 shower-like
# 51 x 51 x 25 float32 events (21% non-zero cells, random mantissas), appended by 64, one event per chunk; CPU time
# per event (best of 3, validation and unit conversion included) and file size per event:
#   no compression  0.34 ms  260.5 kB
#   level 1         2.08 ms   69.4 kB        level 2   2.16 ms  68.4 kB        level 3  2.47 ms  66.3 kB
#   level 4         2.61 ms   64.1 kB        level 6   3.84 ms  63.1 kB        level 9  24.9 ms  62.2 kB
# The HDF5 shuffle filter makes these files larger (the zeros interleave with mantissa bytes). Deflating the float
# mantissas is the whole cost and reading speed does not depend on the level. The simulator must produce 300
# showers/s per core *including* the file, 3.3 ms per shower in all: level 1 is the only level that leaves it more
# than 1 ms, while levels up to 6 would save at most 9% of the size. (None, i.e. no compression, is available for
# scratch files: 4 times larger, 6 times cheaper to write.)
DEFAULT_GZIP_LEVEL = 1

# Fast path for one-event gzip chunks (the cell arrays): each event is deflated with ISA-L (the `isal` package,
# 4-5x faster than zlib at level 1 with slightly smaller output, 0.3 ms instead of 1.4 ms per 51x51x25 shower) and
# stored with `write_direct_chunk`. The stream is standard zlib, so the file is an ordinary gzip-filtered HDF5
# file that any HDF5 reader decompresses; without `isal` the writer falls back to h5py's own filter.
_isal_zlib: Any
try:
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - isal is a dependency; kept optional for exotic platforms
    _isal_zlib = None


def _write_deflated_events(dataset: h5py.Dataset, array: np.ndarray, first: int, level: int | None) -> None:
    """Write events ``array`` (axis 0) at ``first`` into a dataset of one-event gzip chunks, deflating with ISA-L.

    ISA-L has levels 0-3; the HDF5 gzip level maps onto them (1 -> 1, the default).
    """
    assert _isal_zlib is not None
    isal_level = min(max(int(level or 1), 0), 3)
    data = np.ascontiguousarray(array, dtype=dataset.dtype)
    zeros = (0,) * (data.ndim - 1)
    for i in range(len(data)):
        dataset.id.write_direct_chunk((first + i, *zeros), _isal_zlib.compress(data[i].tobytes(), isal_level))


#: Root attributes written by every caloml writer.
LAYOUT_ATTR = "caloml_layout"
VERSION_ATTR = "caloml_version"
CONFIG_ATTR = "caloml_config"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line if len(line) <= 200 else line[:197] + "..."


@contextmanager
def hdf5_errors(path: str | Path, what: str = "read", key: str | None = None) -> Iterator[None]:
    """Turn h5py/OS errors raised inside the block into a one-line DataError naming ``path`` (and ``key``)."""
    try:
        yield
    except CalomlError:
        raise
    except (OSError, RuntimeError, KeyError) as error:
        failure = write_failure(error)  # a full disk, a quota, the file-size limit: not the file's fault
        if failure is not None and ("write" in what or "create" in what):
            raise OutputWriteError(f"{path}: cannot {what}: {failure}") from error
        where = f"{path}: key '{key}'" if key else f"{path}"
        raise DataError(
            f"{where}: cannot {what} ({_first_line(error)}); the file may be truncated or corrupt"
        ) from error


def open_hdf5(path: str | Path) -> h5py.File:
    """Open an existing HDF5 file for reading; DataError if it is missing, a directory, or not readable HDF5."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected an HDF5 file")
    with hdf5_errors(path, "open it as HDF5"):
        return h5py.File(path, "r")


def _decode_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return [_decode_attr(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_attrs(file: h5py.File) -> dict[str, Any]:
    """Root attributes of an open file as plain Python values; ``caloml_config`` is parsed from its JSON text."""
    attrs = {key: _decode_attr(value) for key, value in file.attrs.items()}
    if isinstance(attrs.get(CONFIG_ATTR), str):
        with suppress(json.JSONDecodeError):  # else keep the text
            attrs[CONFIG_ATTR] = json.loads(attrs[CONFIG_ATTR])
    return attrs


def provenance_attrs(config: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """Root attributes recording how a file was made: ``caloml_config`` (JSON text, with the seed) plus ``extra``."""
    attrs: dict[str, Any] = dict(extra)
    if config is not None:
        attrs[CONFIG_ATTR] = json.dumps(config, sort_keys=True, default=str)
    return attrs


ReaderT = TypeVar("ReaderT", bound="HDF5EventReader")

#: Reader class of each registered layout, in registration order (see :func:`register_reader`).
READERS: dict[str, type[HDF5EventReader]] = {}


def register_reader(reader: type[ReaderT]) -> type[ReaderT]:
    """Class decorator: make ``reader`` the reader of its :attr:`~HDF5EventReader.layout` for :func:`open_reader`.

    The layout modules (:mod:`caloml.data.lcd`, :mod:`caloml.data.calochallenge`) register themselves when they are
    imported, which importing any ``caloml.data`` module does (the package imports both); this module never imports
    its subclasses.
    """
    if not reader.layout or not reader.signature_keys:
        raise ValueError(f"{reader.__name__} needs a layout name and signature keys to be registered")
    READERS[reader.layout] = reader
    return reader


def detect_layout(keys: Sequence[str] | h5py.File) -> str | None:
    """The registered layout whose signature keys are best represented among ``keys``: the largest share of its
    signature keys present (``"lcd"`` for ``ECAL``, ``"calochallenge"`` for ``showers`` and ``incident_energies``,
    ``"crystal"`` for ``showers``, ``energy`` and ``impact``), the first registered on a tie; None when none matches."""
    names = set(keys.keys() if isinstance(keys, h5py.File) else keys)
    shares = {layout: len(names & r.signature_keys) / len(r.signature_keys) for layout, r in READERS.items()}
    best = max(shares.values(), default=0.0)
    return next(layout for layout, share in shares.items() if share == best) if best > 0 else None


def open_reader(path: str | Path, **kwargs: Any) -> HDF5EventReader:
    """Open ``path`` with the reader of its layout (LCD, CaloChallenge or crystal, detected from the keys)."""
    with open_hdf5(path) as file, hdf5_errors(path, "list its keys"):
        layout = detect_layout(file)
        keys = sorted(file.keys())
    if layout is not None:
        return READERS[layout](path, **kwargs)
    known = " nor ".join(reader.description for reader in READERS.values())
    found = ", ".join(keys) or "none"
    raise DataError(f"{path}: unknown layout: neither {known}; keys found: {found}")


Selection = int | slice | Sequence[int] | np.ndarray


class HDF5EventReader:
    """Validated, chunked reading of the per-event datasets (axis 0 = events) of one HDF5 file.

    Subclasses set :attr:`layout`, :attr:`required_keys` and :attr:`energy_keys` and implement
    :meth:`_validate_shapes` and :meth:`_convert` (stored units -> GeV, in-memory shapes). The file is opened and
    its structure validated at construction (keys, shapes, event counts, and the values of the small per-event
    scalars); the cell arrays are only read on demand, by chunks, and validated as they are read.
    """

    layout: ClassVar[str] = ""
    #: Keys whose presence identifies the layout's files (:func:`detect_layout`).
    signature_keys: ClassVar[frozenset[str]] = frozenset()
    #: The layout's files in words, with their signature key, for error messages.
    description: ClassVar[str] = ""
    required_keys: ClassVar[tuple[str, ...]] = ()
    #: Keys whose values are energies (checked non-negative).
    energy_keys: ClassVar[frozenset[str]] = frozenset()
    #: Keys holding calorimeter cell arrays (streamed by chunks, never read whole).
    cell_keys: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, path: str | Path, *, chunk_events: int = 256, keys: Sequence[str] | None = None) -> None:
        if chunk_events < 1:
            raise ValueError(f"chunk_events must be positive, got {chunk_events}")
        self.path = Path(path)
        self.chunk_events = int(chunk_events)
        self._file: h5py.File | None = open_hdf5(self.path)
        try:
            with hdf5_errors(self.path, "read its structure"):
                self._setup(keys)
        except BaseException:
            self.close()
            raise

    # -- structure -------------------------------------------------------------------------------------------------
    def _setup(self, keys: Sequence[str] | None) -> None:
        assert self._file is not None
        datasets = {name: obj for name, obj in self._file.items() if isinstance(obj, h5py.Dataset) and obj.ndim >= 1}
        missing = [key for key in self.required_keys if key not in datasets]
        if missing:
            found = ", ".join(sorted(datasets)) or "none"
            raise DataError(f"{self.path}: missing required key '{missing[0]}' (keys found: {found})")
        if keys is not None:
            unknown = [key for key in keys if key not in datasets and key not in self._derived_keys()]
            if unknown:
                raise DataError(f"{self.path}: no key '{unknown[0]}' in the file (keys: {', '.join(sorted(datasets))})")
            selected = list(dict.fromkeys([*keys]))
        else:
            selected = list(datasets) + [k for k in self._derived_keys() if k not in datasets]
        used = {name: d for name, d in datasets.items() if name in selected or name in self.required_keys}
        for name, dataset in used.items():
            if not (np.issubdtype(dataset.dtype, np.number) or np.issubdtype(dataset.dtype, np.bool_)):
                raise DataError(f"{self.path}: key '{name}' has non-numeric dtype {dataset.dtype}")
        self.n_events: int = check_event_counts({name: int(d.shape[0]) for name, d in used.items()}, file=self.path)
        self._validate_shapes({name: tuple(d.shape) for name, d in used.items()})
        self._datasets: dict[str, h5py.Dataset] = {k: datasets[k] for k in selected if k in datasets}
        self.keys: tuple[str, ...] = tuple(selected)
        self.attrs: dict[str, Any] = read_attrs(self._file)
        # the small per-event arrays are read whole now, so that NaN or negative energies fail before any long work
        scalars = {k: d for k, d in self._datasets.items() if k not in self.cell_keys}
        for start in range(0, self.n_events, 65536):
            sel = slice(start, min(start + 65536, self.n_events))
            chunk = {k: self._convert(k, self._read_raw(k, d, sel)) for k, d in scalars.items()}
            check_values(chunk, file=self.path, energy_keys=self.energy_keys, offset=start)
        probe = self.read(slice(0, min(1, self.n_events)), validate=False)
        self.event_shapes: dict[str, tuple[int, ...]] = {k: tuple(v.shape[1:]) for k, v in probe.items()}
        self.dtypes: dict[str, np.dtype] = {k: v.dtype for k, v in probe.items()}

    def _derived_keys(self) -> tuple[str, ...]:
        """Keys a subclass adds that are not datasets of the file (for example ``pdgID`` from the file name)."""
        return ()

    def _validate_shapes(self, shapes: dict[str, tuple[int, ...]]) -> None:
        """Raise DataError if a dataset has an unexpected shape (``shapes`` include the event axis)."""

    def _convert(self, key: str, raw: np.ndarray) -> np.ndarray:
        """Convert a stored array (n, ...) of ``key`` to caloml units and in-memory shape."""
        return raw

    def _derive(self, key: str, n: int) -> np.ndarray:
        """Values of a derived key for ``n`` events."""
        raise KeyError(key)

    @property
    def geometry_name(self) -> str:
        """Name of the file's calorimeter geometry (``clic-ecal``, ``calochallenge-2``...); set by subclasses."""
        return ""

    # -- reading -----------------------------------------------------------------------------------------------------
    @property
    def array_keys(self) -> tuple[str, ...]:
        """The selected calorimeter cell arrays of the file."""
        return tuple(k for k in self.keys if k in self.cell_keys)

    @property
    def scalar_keys(self) -> tuple[str, ...]:
        """The selected per-event keys that are not cell arrays."""
        return tuple(k for k in self.keys if k not in self.cell_keys)

    def _read_raw(self, key: str, dataset: h5py.Dataset, selection: slice | np.ndarray) -> np.ndarray:
        with hdf5_errors(self.path, "read it", key=key):
            if key in self.cell_keys and dataset.dtype != np.float32:
                return dataset.astype(np.float32)[selection]  # converted by HDF5, no float64 copy in memory
            return dataset[selection]

    def _file_open(self) -> h5py.File:
        if self._file is None:
            raise ValueError(f"{self.path}: reader is closed")
        return self._file

    def read(self, selection: Selection, *, validate: bool = True) -> dict[str, np.ndarray]:
        """Events at ``selection`` (an index, a slice or a sequence of indices, any order) as a dict of arrays in GeV.

        Arrays have the event axis first: ``len(indices)`` events in the order asked (1 for an integer index).
        """
        self._file_open()
        n = self.n_events
        if isinstance(selection, slice):
            start, stop, step = selection.indices(n)
            if step == 1:
                stop = max(start, stop)
                return self._read_sorted(slice(start, stop), np.arange(start, stop), validate)
            indices = np.arange(start, stop, step)
        else:
            indices = np.atleast_1d(np.asarray(selection))
            if indices.ndim != 1 or not (np.issubdtype(indices.dtype, np.integer) or indices.size == 0):
                raise TypeError(f"selection must be an int, a slice or a 1-D sequence of ints, got {selection!r}")
            indices = indices.astype(np.int64)
        indices = np.where(indices < 0, indices + n, indices)
        if indices.size and (indices.min() < 0 or indices.max() >= n):
            raise IndexError(f"{self.path}: event index out of range for {n} events")
        unique, inverse = np.unique(indices, return_inverse=True)
        events = self._read_sorted(unique, unique, validate)
        return {k: v[inverse] for k, v in events.items()}

    def _read_sorted(self, selection: slice | np.ndarray, indices: np.ndarray, validate: bool) -> dict[str, np.ndarray]:
        n = len(indices)
        events: dict[str, np.ndarray] = {}
        for key in self.keys:
            if key in self._datasets:
                raw = self._read_raw(key, self._datasets[key], selection)
                events[key] = self._convert(key, raw)
            else:
                events[key] = self._derive(key, n)
        if validate:
            check_values(events, file=self.path, energy_keys=self.energy_keys, offset=indices)
        return events

    def read_key(self, key: str) -> np.ndarray:
        """All events of one key, converted (GeV, in-memory shape). Meant for scalars: a cell array is read whole."""
        if key not in self.keys:
            raise KeyError(f"{self.path}: key '{key}' not selected (keys: {', '.join(self.keys)})")
        self._file_open()
        if key not in self._datasets:
            return self._derive(key, self.n_events)
        return self._convert(key, self._read_raw(key, self._datasets[key], slice(None)))

    def iter_chunks(self, *, start: int = 0, stop: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Yield consecutive events ``[start, stop)`` by chunks of ``chunk_events``, each a dict of arrays in GeV.

        Memory stays bounded by one chunk: a full file is never loaded at once.
        """
        stop = self.n_events if stop is None else min(stop, self.n_events)
        for begin in range(start, stop, self.chunk_events):
            yield self.read(slice(begin, min(begin + self.chunk_events, stop)))

    def __len__(self) -> int:
        return self.n_events

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self.iter_chunks()

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> HDF5EventReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        shapes = (
            ", ".join(f"{k}{format_shape(('N', *s))}" for k, s in self.event_shapes.items())
            if hasattr(self, "event_shapes")
            else ""
        )
        return f"{type(self).__name__}('{self.path}', n_events={getattr(self, 'n_events', '?')}, {shapes})"


def _remove_quietly(path: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)


def _attr_value(value: Any) -> Any:
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, sort_keys=True, default=str)
    if value is None:
        return "null"
    if isinstance(value, Path):
        return str(value)
    return value


class HDF5EventWriter:
    """Atomic writer of per-event datasets: resizable along axis 0, gzip-compressed, chunked.

    Data goes to a temporary file next to ``path``; :meth:`close` (or leaving the ``with`` block normally) renames it
    to ``path`` with ``os.replace``; an exception inside the block, or :meth:`abort`, removes it. An existing
    ``path`` raises :class:`OutputExistsError` unless ``overwrite=True`` (the replacement is still atomic).
    Subclasses implement :meth:`_prepare` (validation, GeV -> stored units, dtypes) and :meth:`_chunk_rows`.
    """

    layout: ClassVar[str] = ""

    def __init__(
        self,
        path: str | Path,
        *,
        overwrite: bool = False,
        attrs: Mapping[str, Any] | None = None,
        compression_level: int | None = DEFAULT_GZIP_LEVEL,
    ) -> None:
        self.path = Path(path)
        if compression_level is not None and not 0 <= compression_level <= 9:
            raise ValueError(f"compression_level must be None or 0..9, got {compression_level}")
        self.compression_level = compression_level
        if self.path.exists() and not overwrite:
            raise OutputExistsError(f"{self.path}: output exists; pass overwrite=True (--overwrite) to replace it")
        if self.path.is_dir():
            raise OutputExistsError(f"{self.path}: output is a directory")
        # the naming convention of caloml.atomic_files; the file stays open over many appends, hence no context
        self._tmp = str(new_temporary_file(self.path))
        with hdf5_errors(self._tmp, "create it"):
            self._file: h5py.File | None = h5py.File(self._tmp, "w")
        self._cleanup = weakref.finalize(self, _remove_quietly, self._tmp)
        self._descriptor = self._file.id.get_vfd_handle()  # see abort()
        self._datasets: dict[str, h5py.Dataset] = {}
        self.n_events = 0
        try:
            self._file.attrs[LAYOUT_ATTR] = self.layout
            self._file.attrs[VERSION_ATTR] = caloml.__version__
            for key, value in (attrs or {}).items():
                self._file.attrs[key] = _attr_value(value)
        except BaseException:
            self.abort()
            raise

    def _prepare(self, events: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validate ``events`` (GeV) and return the arrays to store (stored units and dtypes, axis 0 = events)."""
        raise NotImplementedError

    def _chunk_rows(self, key: str, event_shape: tuple[int, ...], itemsize: int) -> int:
        """Events per HDF5 chunk of dataset ``key``."""
        return 1 if event_shape else 4096

    def append(self, events: Mapping[str, np.ndarray]) -> None:
        """Append a batch of events (a dict of arrays in GeV, axis 0 = events) to the file."""
        if self._file is None:
            raise ValueError(f"{self.path}: writer is closed")
        arrays = self._prepare(events)
        n = check_event_counts({k: len(v) for k, v in arrays.items()}, file=self.path)
        if self._datasets and set(arrays) != set(self._datasets):
            raise DataError(
                f"{self.path}: append: keys {sorted(arrays)} differ from the first batch's {sorted(self._datasets)}"
            )
        try:
            with hdf5_errors(self.path, "write it"):
                for key, array in arrays.items():
                    dataset = self._datasets.get(key)
                    if dataset is None:
                        dataset = self._create(key, array)
                    elif dataset.shape[1:] != array.shape[1:]:
                        raise DataError(
                            f"{self.path}: key '{key}': append of shape {format_shape(array.shape)}, the file has"
                            f" {format_shape(('N', *dataset.shape[1:]))}"
                        )
                    dataset.resize(self.n_events + n, axis=0)
                    if self._deflates_per_event(dataset):
                        _write_deflated_events(dataset, array, self.n_events, self.compression_level)
                    else:
                        dataset[self.n_events :] = array
        except BaseException:
            self.abort()
            raise
        self.n_events += n

    def _deflates_per_event(self, dataset: h5py.Dataset) -> bool:
        """Whether ``dataset`` takes the fast path: one event per gzip chunk and ISA-L available."""
        return _isal_zlib is not None and dataset.compression == "gzip" and dataset.chunks[0] == 1

    def _create(self, key: str, array: np.ndarray) -> h5py.Dataset:
        assert self._file is not None
        event_shape = tuple(array.shape[1:])
        rows = max(1, int(self._chunk_rows(key, event_shape, array.dtype.itemsize)))
        options: dict[str, Any] = {}
        if self.compression_level is not None:
            options = {"compression": "gzip", "compression_opts": self.compression_level}
        dataset = self._file.create_dataset(
            key,
            shape=(0, *event_shape),
            maxshape=(None, *event_shape),
            chunks=(rows, *event_shape),
            dtype=array.dtype,
            **options,
        )
        self._datasets[key] = dataset
        return dataset

    def close(self) -> None:
        """Finish the file and move it to its final path (idempotent)."""
        if self._file is None:
            return
        try:
            with hdf5_errors(self.path, "write it"):
                self._file.flush()  # a full disk fails here, where abort() can still discard the file cleanly
                self._file.close()
            self._file = None
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._cleanup.detach()

    def abort(self) -> None:
        """Discard the temporary file; ``path`` is left as it was.

        HDF5 flushes its caches when a file closes; on a full disk that flush fails, and a file whose close failed
        crashes the interpreter at exit. So the file's descriptor is first pointed at ``/dev/null``: the discarded
        data then goes nowhere, the close succeeds, and nothing of the file is left to HDF5.
        """
        if self._file is not None:
            with suppress(OSError):
                sink = os.open(os.devnull, os.O_WRONLY)
                os.dup2(sink, self._descriptor)
                os.close(sink)
            with suppress(Exception):  # the file is being discarded
                self._file.close()
            self._file = None
        self._cleanup()

    def __enter__(self) -> HDF5EventWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
