"""Batch folders: listing, fingerprints, loading with contract checks, and the windows of a run.

A data source is a folder of files, one per period (a week, a day), sorted by name. Every batch a
run reads is recorded as a :class:`Batch` — its path, rows, time range and sha256 — so an auditor or
a later incremental run can rebuild exactly the same data, and a changed file is noticed.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pandas as pd

from .durable import sha256_file as file_sha256, sha256_parts
from .errors import DataContractError
from .paths import Paths
from .profiles import DataSource, TrainingSettings

log = logging.getLogger("retrainlib.data")

__all__ = [
    "Batch",
    "read_frame",
    "column_names",
    "check_time_order",
    "Windows",
    "list_batches",
    "load_batches",
    "feature_columns",
    "column_kinds",
    "plan_windows",
    "parse_as_of",
    "file_sha256",
    "frame_fingerprint",
    "batches_from_records",
    "check_file",
    "read_columns",
]


@dataclass(frozen=True)
class Batch:
    """One file of a data source, as a run saw it."""

    path: str  # relative to the project home when inside it
    rows: int
    start: str  # ISO timestamps of the oldest and newest row
    end: str
    sha256: str

    @property
    def name(self) -> str:
        return Path(self.path).name

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """A sha256 of a frame's values, columns and order (independent of the file format)."""
    return sha256_parts("|".join(map(str, frame.columns)), pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())


def parse_as_of(value: str | dt.date | dt.datetime | None) -> pd.Timestamp | None:
    """``"2024-03-10"`` means the end of that day; a full timestamp is taken as given."""
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        return pd.Timestamp(value)
    if isinstance(value, dt.date):
        return pd.Timestamp(value) + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    text = str(value).strip()
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError) as exc:
        raise DataContractError(f"as_of {value!r} is not a date; expected e.g. 2024-03-10 or 2024-03-10T12:00") from exc
    if len(text) <= 10:  # a bare date
        ts = ts + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    return ts.tz_localize(None) if ts.tzinfo else ts


SUFFIXES = (".parquet", ".csv")


def _check_suffix(path: Path, what: str) -> None:
    if path.suffix not in SUFFIXES:
        raise DataContractError(f"{what} {path} is neither .parquet nor .csv; convert it or change data.pattern")


def column_names(path: str | Path, *, what: str = "file") -> list[str]:
    """The column names of a Parquet or CSV file, from its schema or header (no rows read): the one column reader.

    The names are the columns a reader of the file gets, as written (duplicates kept, so a check can name
    them): a pandas index stored in a Parquet file is no column. Any other suffix is a
    :class:`DataContractError` naming the file (``what`` says which file it is).
    """
    path = Path(path)
    _check_suffix(path, what)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        schema = pq.read_schema(path)
        meta = schema.pandas_metadata if schema.metadata and b"pandas" in schema.metadata else {}
        index = {c for c in (meta or {}).get("index_columns") or [] if isinstance(c, str)}  # a stored index is no column
        return [n for n in schema.names if n not in index]
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return next(csv.reader(f), [])


def read_frame(path: str | Path, columns: Sequence[str] | None = None, *, what: str = "file") -> pd.DataFrame:
    """Read a Parquet or CSV file; any problem is a :class:`DataContractError` naming the file and the real cause.

    Refused: a file that is not there, neither format, truncated or not Parquet, not UTF-8, empty, or
    holding one column name twice (pandas would rename the second ``x.1``; pyarrow cannot read it).
    """
    path = Path(path)
    if not path.is_file():
        raise DataContractError(f"{what} {path} does not exist; give a Parquet or CSV file")
    _check_suffix(path, what)
    names: list[str] = []
    try:
        names = column_names(path)
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise DataContractError(f"{what} {path} has the column name {', '.join(map(repr, dupes))} more than once; "
                                    "rename or drop the duplicate column")
        if not names:
            raise DataContractError(f"{what} {path} is empty (no header, no rows); write its columns and rows")
        if path.suffix == ".parquet":
            return pd.read_parquet(path, columns=list(columns) if columns else None)
        return pd.read_csv(path, usecols=list(columns) if columns else None, encoding="utf-8")
    except DataContractError:
        raise
    except UnicodeDecodeError as exc:
        raise DataContractError(f"{what} {path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                                f"{exc.start}); save it as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise DataContractError(f"{what} {path} is empty (no header, no rows); write its columns and rows") from None
    except (ValueError, KeyError) as exc:
        import pyarrow as pa

        if isinstance(exc, pa.ArrowException) or not names:  # the file itself is broken, not a column request
            raise DataContractError(f"{what} {path} cannot be read as {path.suffix[1:]}: {_cause(exc)}; "
                                    "restore the file (truncated or corrupt?) or write it again") from None
        if columns and any(c not in names for c in columns):
            missing = [c for c in columns if c not in names]
            raise DataContractError(f"{what} {path} has no column {', '.join(map(repr, missing))} "
                                    f"(columns there: {', '.join(map(str, names[:12]))})") from None
        raise DataContractError(f"{what} {path} cannot be read: {_cause(exc)}; restore the file or write it again") from None
    except Exception as exc:  # pyarrow's ArrowInvalid / OSError for a truncated or foreign file
        raise DataContractError(f"{what} {path} cannot be read as {path.suffix[1:]}: {_cause(exc)}; "
                                "restore the file (truncated or corrupt?) or write it again") from None


def _cause(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}"


def _read(path: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    return read_frame(path, columns, what="batch file")


def check_file(path: str | Path, *, what: str = "file") -> list[str]:
    """A data file's column names, after :func:`read_frame`'s checks (there, a known format, readable, names unique)."""
    path = Path(path)
    if not path.is_file() or path.suffix not in SUFFIXES:
        read_frame(path, what=what)  # raises, naming the file
    try:
        names = column_names(path)
    except Exception:
        read_frame(path, what=what)  # raises the precise cause
        raise
    if not names or len(set(names)) != len(names):
        read_frame(path, what=what)  # raises: empty, or a name twice
    return names


def count_rows(path: str | Path) -> int | None:
    """Rows of a Parquet file, from its footer (no data read); None for a CSV file (only reading it counts)."""
    path = Path(path)
    if path.suffix != ".parquet":
        return None
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def read_columns(path: str | Path, columns: Sequence[str], *, rows: Any = None, what: str = "batch file") -> pd.DataFrame:
    """Only ``columns`` of a Parquet or CSV file (those it has, in that order), and only ``rows`` when given.

    Parquet text columns come as pandas categories, decoded once per distinct value instead of once
    per row (a million rows of four text columns read in a tenth of the time); values and missing
    values are unchanged. ``rows`` (sorted row positions) are taken from the Arrow table before
    pandas sees it, so rows left out are never converted; the frame's index is 0..len(rows)-1. The
    file is memory-mapped (a third fewer page faults than reading it into buffers).
    """
    path = Path(path)
    have = set(column_names(path, what=what))
    wanted = [c for c in columns if c in have]
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pq.read_schema(path)
        text = [c for c in wanted if pa.types.is_string(schema.field(c).type) or pa.types.is_large_string(schema.field(c).type)]
        table = pq.read_table(path, columns=wanted, read_dictionary=text, memory_map=True)
        return (table if rows is None else table.take(pa.array(rows))).to_pandas()
    frame = read_frame(path, wanted, what=what)[wanted]
    return frame if rows is None else frame.iloc[rows].reset_index(drop=True)


def _display(path: Path, paths: Paths) -> str:
    try:
        return str(path.resolve().relative_to(paths.home))
    except ValueError:
        return str(path.resolve())


def list_batches(source: DataSource, paths: Paths, *, as_of: Any = None) -> list[Batch]:
    """The batches of ``source`` whose newest row is at or before ``as_of`` (all when None), oldest first."""
    folder = paths.resolve(source.batches)
    if not folder.is_dir():
        raise DataContractError(
            f"batches folder {folder} (data.batches) does not exist; "
            "create it, point data.batches at your data, or run `retrain demo-data` for the demo"
        )
    files = sorted(folder.glob(source.pattern))
    if not files:
        raise DataContractError(f"no files match {source.pattern!r} in {folder}; check data.pattern and data.batches")
    cutoff = parse_as_of(as_of)
    seen = []
    kinds: dict[str, tuple[str, str]] = {}
    for f in files:
        shown = _display(f, paths)
        if source.time_column not in _listing_facts(*_file_version(f))[0]:  # the names, after check_file's checks
            raise DataContractError(
                f"time column {source.time_column!r} is missing from batch {shown}; "
                "add it or set data.time_column to the column that orders rows"
            )
        _check_schema_kinds(f, shown, kinds)
        n, start, end = _time_range(f, source.time_column, shown)
        if not n:
            continue
        seen.append(Batch(shown, n, start, end, file_sha256(f)))  # the identity is hashed every time
    check_time_order(seen)
    out = []
    for b in seen:
        if cutoff is not None and _naive(b.end) > cutoff:
            if _naive(b.start) <= cutoff:
                log.warning("batch %s holds rows up to %s, after as_of %s: the whole batch is left out of this run "
                            "(a batch is used whole or not at all)", b.path, b.end, cutoff)
            continue
        out.append(b)
    return out


def _check_schema_kinds(path: Path, shown: str, kinds: dict[str, tuple[str, str]]) -> None:
    """A Parquet batch's column types (from its schema, no rows read) keep the kind the first batch gave them."""
    for name, kind in _listing_facts(*_file_version(path))[1]:
        first = kinds.setdefault(name, (kind, shown))
        if first[0] != kind:
            raise DataContractError(f"column {name!r} is {first[0]} in batch {first[1]} but {kind} in batch {shown}; "
                                    "fix the feed so the column keeps one type")


def _file_version(path: Path) -> tuple[str, int, int, int]:
    """A file's path, size, modification time (ns) and inode: what names one version of it in the caches here."""
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns, st.st_ino


@functools.lru_cache(maxsize=4096)
def _listing_facts(path: str, size: int, mtime_ns: int, inode: int) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """A batch file's column names (after :func:`check_file`'s checks) and, for Parquet, each column's kind from
    its schema (no rows read; a CSV's types show only once read, so load_batches checks them per window);
    read once per file version. A refusal raises and is not kept."""
    names = tuple(check_file(Path(path), what="batch file"))
    if not path.endswith(".parquet"):
        return names, ()
    import pyarrow as pa
    import pyarrow.parquet as pq

    kinds = []
    for field in pq.read_schema(path):
        t = field.type
        if pa.types.is_dictionary(t):
            t = t.value_type
        kind = ("empty" if pa.types.is_null(t) else
                "numeric" if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t) else
                "timestamp" if pa.types.is_timestamp(t) or pa.types.is_date(t) else
                "text" if pa.types.is_string(t) or pa.types.is_large_string(t) else "other")
        if kind not in ("empty", "other"):
            kinds.append((field.name, kind))
    return names, tuple(kinds)


def _time_range(path: Path, column: str, shown: str) -> tuple[int, str | None, str | None]:
    """Rows, first and last time of a batch file; read once per file version (its size and modification time)."""
    return _time_range_of(*_file_version(path), column, shown)


@functools.lru_cache(maxsize=4096)
def _time_range_of(path: str, size: int, mtime_ns: int, inode: int, column: str, shown: str) -> tuple[int, str | None, str | None]:
    times = _times(_read(Path(path), [column])[column], shown, column)  # a refusal raises and is not kept
    if times.empty:
        return 0, None, None
    return int(len(times)), times.min().isoformat(), times.max().isoformat()


def _times(values: pd.Series, where: str, column: str) -> pd.Series:
    try:
        times = pd.to_datetime(values)
    except (ValueError, TypeError) as exc:
        raise DataContractError(f"time column {column!r} of batch {where} holds values that are not timestamps "
                                f"({_cause(exc)}); fix them or set data.time_column") from None
    return times


def _naive(text: str) -> pd.Timestamp:
    ts = pd.Timestamp(text)
    return ts.tz_convert(None) if ts.tzinfo else ts


def check_time_order(batches: Sequence[Batch], *, now: pd.Timestamp | None = None) -> None:
    """Batches sorted by name must follow each other in time, and no row may lie in the future.

    A batch that starts before its predecessor starts, or ends before it ends, does not follow its
    name (a file misnamed or a row misdated); a row dated after now would silently drop its batch from
    every ``--as-of`` run. Both are refused, naming the files.
    """
    now = now if now is not None else pd.Timestamp.now(tz="UTC").tz_localize(None)
    for b in batches:
        if _naive(b.end) > now + pd.Timedelta(days=1):
            raise DataContractError(f"batch {b.path} has a row dated {b.end}, in the future; fix the row's time "
                                    "(a future row would hide the whole batch from runs with --as-of)")
    for a, b in zip(batches, batches[1:]):
        if _naive(b.start) < _naive(a.start) or _naive(b.end) < _naive(a.end):
            raise DataContractError(
                f"batches are out of time order: {b.path} ({b.start} .. {b.end}) sorts after {a.path} ({a.start} .. "
                f"{a.end}) by name but not by time; rename the files so that names sort by time, or fix the misdated rows"
            )


def batches_from_records(records: Iterable[dict[str, Any]], paths: Paths, *, verify: bool = True) -> list[Batch]:
    """Rebuild batches a version or run recorded; ``verify`` refuses a file that changed since."""
    out = []
    for rec in records:
        batch = Batch(**{k: rec[k] for k in ("path", "rows", "start", "end", "sha256")})
        if verify:
            full = paths.resolve(batch.path)
            if not full.is_file():
                raise DataContractError(f"batch {batch.path} recorded by an earlier run is missing; restore it from backup")
            now = file_sha256(full)
            if now != batch.sha256:
                raise DataContractError(
                    f"batch {batch.path} changed since it was recorded (sha256 {batch.sha256[:12]}… now {now[:12]}…); "
                    "restore the original file: recorded data must not be edited in place"
                )
        out.append(batch)
    return out


def load_batches(
    batches: Sequence[Batch],
    paths: Paths,
    source: DataSource,
    *,
    require_label: bool = True,
    max_rows: int | None = None,
    check: Callable[[pd.DataFrame, Batch], None] | None = None,
) -> pd.DataFrame:
    """Read and concatenate batches, oldest first, checking each file's contract.

    ``check(frame, batch)`` runs on each file's rows before they are combined, so a broken file is
    named. Rows are deduplicated on ``source.key`` (newest kept) and capped at ``max_rows`` (newest
    kept).
    """
    if not batches:
        raise DataContractError("the window holds no batches; add data or lower holdout_batches/window_batches")
    frames, kinds = [], []
    for b in batches:
        frame, kinds_b = _FRAMES.get(paths.resolve(b.path), source.time_column, b.path)
        for col, role, fix in (
            (source.time_column, "time column", "data.time_column"),
            (source.label, "label column", "data.label"),
        ):
            if col not in frame.columns and (require_label or col != source.label):
                raise DataContractError(
                    f"{role} {col!r} is missing from batch {b.path}; restore it or set {fix} to the right name "
                    f"(columns there: {', '.join(map(str, frame.columns[:12]))})"
                )
        if check is not None:
            check(frame, b)
        frames.append(frame)
        kinds.append(kinds_b)
    _check_kinds(frames, batches, kinds)
    out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    for col in out.columns:  # categories that differ between batches come back as object; restore them
        if out[col].dtype == object and all(isinstance(f[col].dtype, pd.CategoricalDtype) for f in frames if col in f):
            out[col] = out[col].astype("category")
    if source.key and source.key in out.columns:
        out = out.drop_duplicates(subset=[source.key], keep="last")
    if max_rows is not None and len(out) > max_rows:
        out = out.iloc[-max_rows:]
    return out.reset_index(drop=True)


class _FrameCache:
    """Batch files read once per file version (:func:`_file_version`) within a memory budget, newest kept.

    A backtest reads the same batches at every step of every strategy; a run reads each once, so
    nothing changes for it. Each reader gets its own deep copy (callers may add columns), and a file
    that cannot be read raises every time (a refusal is never kept).
    """

    def __init__(self, budget_bytes: int):
        self.budget, self.used = budget_bytes, 0
        self._items: OrderedDict[tuple, tuple[pd.DataFrame, dict[str, str], int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path, time_column: str, shown: str) -> tuple[pd.DataFrame, dict[str, str]]:
        """A copy of the file's rows with ``time_column`` parsed (when present), and each column's kind."""
        key = (*_file_version(path), time_column)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
        if hit is None:
            frame = _read(path)
            if time_column in frame.columns:
                frame[time_column] = _times(frame[time_column], shown, time_column)
            hit = (frame, {c: _kind(frame[c]) for c in frame.columns}, int(frame.memory_usage(deep=True).sum()))
            self._keep(key, hit)
        return hit[0].copy(deep=True), hit[1]

    def _keep(self, key: tuple, item: tuple) -> None:
        if item[2] > self.budget // 4:
            return  # a big file is read each time rather than crowd out the rest
        with self._lock:
            if key in self._items:
                return
            self._items[key] = item
            self.used += item[2]
            while self.used > self.budget:
                self.used -= self._items.popitem(last=False)[1][2]


_FRAMES = _FrameCache(budget_bytes=256 * 2**20)


def _kind(series: pd.Series) -> str:
    if not series.notna().any():
        return "empty"  # all missing: says nothing about the column's type
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "timestamp"
    return "text"


def _check_kinds(frames: Sequence[pd.DataFrame], batches: Sequence[Batch], kinds: Sequence[dict[str, str]]) -> None:
    """A column keeps its kind (numeric, text, timestamp) across batches; a feed that turned numbers into text is named."""
    first: dict[str, tuple[str, str]] = {}
    for frame, b, kinds_b in zip(frames, batches, kinds):
        for col in frame.columns:
            kind = kinds_b[col]
            if kind == "empty":
                continue
            if col not in first:
                first[col] = (kind, b.path)
            elif first[col][0] != kind:
                sample = frame[col].dropna().iloc[0]
                raise DataContractError(
                    f"column {col!r} is {first[col][0]} in batch {first[col][1]} but {kind} in batch {b.path} "
                    f"(e.g. {str(sample)[:40]!r}); fix the feed so the column keeps one type"
                )


def feature_columns(frame: pd.DataFrame, source: DataSource) -> list[str]:
    """Every column except the label, time column, key and ignored columns."""
    skip = {source.label, source.time_column, source.key, *source.ignore_columns}
    return [c for c in frame.columns if c not in skip]


def column_kinds(frame: pd.DataFrame, columns: Sequence[str]) -> dict[str, str]:
    """The data contract of ``columns``: each column's kind (boolean, numeric, datetime, categorical).

    Kinds, not dtypes: an integer column that gains a missing value reads back as float and is
    still the same numeric input.
    """
    out = {}
    for c in columns:
        s = frame[c]
        if pd.api.types.is_bool_dtype(s):
            out[str(c)] = "boolean"
        elif pd.api.types.is_numeric_dtype(s):
            out[str(c)] = "numeric"
        elif pd.api.types.is_datetime64_any_dtype(s):
            out[str(c)] = "datetime"
        else:  # strings and categories: AutoGluon reads both as categories or text
            out[str(c)] = "categorical"
    return out


@dataclass(frozen=True)
class Windows:
    """Which batches a run compares, trains on and validates on."""

    visible: tuple[Batch, ...]
    holdout: tuple[Batch, ...]
    reference: tuple[Batch, ...]
    current: tuple[Batch, ...]
    train: tuple[Batch, ...]
    strategy: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            **{
                name: [b.to_dict() for b in getattr(self, name)]
                for name in ("holdout", "reference", "current", "train")
            },
            "visible": len(self.visible),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], visible: Sequence[Batch] = ()) -> "Windows":
        def rebuild(key: str) -> tuple[Batch, ...]:
            return tuple(Batch(**rec) for rec in d[key])

        return cls(tuple(visible), rebuild("holdout"), rebuild("reference"), rebuild("current"), rebuild("train"), d["strategy"])


def plan_windows(
    visible: Sequence[Batch],
    *,
    training: TrainingSettings,
    champion_slices: Sequence[Batch] | None,
    label_delay_batches: int = 0,
) -> Windows:
    """Split the visible batches into holdout, reference, current and training windows.

    * labelled: every visible batch but the newest ``label_delay_batches`` (their labels come later;
      they still count for drift, as part of ``current``).
    * holdout: the newest ``holdout_batches`` labelled batches; nobody trains on them.
    * reference: the champion's own training slices (none on the first run).
    * current: the batches newer than the champion's newest training batch.
    * train: by strategy, from the batches before the holdout — ``full`` all of them,
      ``sliding_window`` the newest ``window_batches`` (or the batches of the last ``window_days``),
      ``incremental`` the champion's slices plus the batches newer than them.
    """
    visible = list(visible)
    need = training.holdout_batches + 1 + label_delay_batches
    if len(visible) < need:
        delay = f", label_delay_batches={label_delay_batches} without labels" if label_delay_batches else ""
        raise DataContractError(
            f"{len(visible)} batch(es) visible but a run needs at least {need} "
            f"(holdout_batches={training.holdout_batches} plus one to train on{delay}); add data or move as_of later"
        )
    labelled = visible[: len(visible) - label_delay_batches]
    holdout = labelled[-training.holdout_batches :]
    before = labelled[: -training.holdout_batches]
    reference = list(champion_slices or [])
    ref_end = max((b.end for b in reference), default=None)
    current = [b for b in visible if ref_end is None or b.end > ref_end]
    strategy = training.strategy
    if strategy == "full" or (strategy == "incremental" and not reference):
        train = before
    elif strategy == "sliding_window" and training.window_days is not None:
        start = pd.Timestamp(before[-1].end) - pd.Timedelta(days=training.window_days)
        train = [b for b in before if pd.Timestamp(b.end) > start]
    elif strategy == "sliding_window":
        train = before[-training.window_batches :]
    else:  # incremental
        recorded = {b.path for b in reference}
        train = reference + [b for b in before if b.path not in recorded and (ref_end is None or b.end > ref_end)]
    return Windows(tuple(visible), tuple(holdout), tuple(reference), tuple(current), tuple(train), strategy)
