"""Data quality: is the data *broken* (block), or has it *changed* (report, score, maybe retrain)?

:func:`check_hard_breaks` stops a run on data too broken to even measure (an empty window, the
label column gone, a required column gone) with a :class:`~retrainlib.errors.DataQualityError`
naming the column and the file. :func:`assess` runs the named checks of :data:`CHECKS` and returns
a :class:`QualityReport`. Each check is of one of two kinds (:data:`KINDS`):

* **broken** data cannot be trained on or scored: a schema or type break, ±inf, a column that had
  values and is now empty, labels missing where they are due, a label value the label contract
  cannot hold, a value breaking a constraint the profile declares (``data.constraints``). A failed
  broken check *blocks* retraining, naming the file, the column and the row count.
* **changed** data is real data that moved: values outside the reference range (a season), a new
  missing share, repeated rows, a column that became constant, unseen categories, a new label
  class. It never blocks. It is reported and scored: the score is the weight of the changed checks
  passed over the weight of those that apply, and a score below ``data_quality_threshold`` is a
  ``data_quality`` trigger reason (``triggers.quality``: ``retrain`` or ``report``), as the guide's
  ``monitor_data_quality`` asks.

The comparisons are made against the *recent* batches (step 10 passes the batches the strategy
trains on that precede the judged ones, :func:`assess_batches` ``neighbours``), not against the
champion's old window: a spring batch is compared with the winter before it, and a flag that was
constant all along is not "became constant".

Each check measures one ``value`` and passes when it is at most its ``threshold`` (the tolerances
in :data:`LIMITS`, overridable per call):

===================== ============================================================ =========
check                 value                                                        kind
===================== ============================================================ =========
schema                columns missing, or whose kind changed, vs reference (0)      broken
missing_labels        share of rows without a label, among those due (0.05)         broken
infinite_values       largest share of a numeric column (or the label) that is ±inf broken
empty_columns         columns with no value at all that had values before (0)       broken
unseen_labels         share of labelled rows whose label breaks the label contract  broken
constraints           rows breaking a ``data.constraints`` rule (0)                 broken
missing_values        largest rise of a column's missing share vs reference (0.05)  changed
out_of_range          largest share of a numeric column outside the reference range changed
                      (0.05; only columns whose reference holds a range: two or
                      more distinct values, in at least 5 % of its rows)
unseen_categories     largest share of a column in categories the reference lacks   changed
duplicate_rows        rise of the share of rows repeating an earlier row (0.05)     changed
constant_columns      columns with a single value that varied in the reference (0)  changed
new_columns           feature columns the reference lacks (0)                       changed
new_labels            share of labelled rows in a valid class never seen before (0) changed,
                                                                                   unscored
===================== ============================================================ =========

A column that had values (in the reference or an earlier batch, ``had_values``) and has none now
is a feed that broke; a column that never had a value yet is no broken column (nothing was lost;
it may start later in the stream). The label contract: a ``binary`` label holds two classes, and a
class is of the kind of the known ones (a number among numbers, integral among integral ones, text
among text); a value that breaks it is ``unseen_labels``. A class that keeps the contract but was
never seen (``label_classes``: the classes of every earlier labelled batch) is ``new_labels``.
Run :func:`assess_batches` on the batches as well as :func:`assess` on the window: a feature that
is empty in one batch of nine is only 11 % of the window, but all of that batch.

Without a reference window the comparisons do not apply (weight 0), ``missing_values`` checks the
missing share itself (at most 0.5) and ``duplicate_rows`` the share itself.

>>> import pandas as pd
>>> ref = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]})
>>> cur = pd.DataFrame({"x": [1.0, 2.0, 9.0, None], "y": [0, 1, 0, 1]})
>>> report = assess(cur, reference=ref, label="y", threshold=0.8)
>>> report.failed, report.passed, report.blocked_by
(('missing_values', 'out_of_range'), True, ())
>>> round(report.score, 2), report.below_threshold
(0.67, True)
>>> cur.loc[0, "x"] = float("inf")
>>> report = assess(cur, reference=ref, label="y", threshold=0.0)
>>> report.passed, report.blocked_by
(False, ('infinite_values',))
>>> report = assess(ref, reference=None, label="y", threshold=0.8, constraints=["x <= 3"])
>>> report.blocked_by, report.check("constraints").detail
(('constraints',), 'x <= 3: 1 of 4 rows break it (e.g. 4)')
>>> labels = pd.DataFrame({"x": [1.0, 2.0], "y": ["sun", "snow"]})
>>> report = assess(labels, reference=None, label="y", threshold=0.8, label_classes=["sun", "rain"])
>>> report.passed, [c.name for c in report.checks if not c.passed]
(True, ['new_labels'])
"""

from __future__ import annotations

import math
import numbers
import operator
import re
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Collection, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import DataQualityError

__all__ = ["QualityCheck", "QualityReport", "QualitySettings", "CHECKS", "LIMITS", "WEIGHTS", "KINDS", "BLOCKING", "assess",
           "assess_batches", "check_hard_breaks", "columns_with_values", "parse_constraint"]

#: tolerance of each check: the value at or below which it passes
LIMITS: dict[str, float] = {
    "schema": 0,
    "missing_labels": 0.05,
    "infinite_values": 0,
    "empty_columns": 0,
    "unseen_labels": 0,
    "constraints": 0,
    "missing_values": 0.05,
    "out_of_range": 0.05,
    "unseen_categories": 0.10,
    "duplicate_rows": 0.05,
    "constant_columns": 0,
    "new_columns": 0,
    "new_labels": 0,
}
#: the kind of each check: ``broken`` data blocks, ``changed`` data is scored and reported
KINDS: dict[str, str] = {name: "broken" for name in ("schema", "missing_labels", "infinite_values", "empty_columns",
                                                      "unseen_labels", "constraints")}
KINDS.update({name: "changed" for name in ("missing_values", "out_of_range", "unseen_categories", "duplicate_rows",
                                            "constant_columns", "new_columns", "new_labels")})
#: weight of each changed check in the score (broken checks block and carry no weight; a new label class
#: is reported, a drift the next retrain learns, and carries none either)
WEIGHTS: dict[str, float] = {name: (1.0 if kind == "changed" and name != "new_labels" else 0.0)
                             for name, kind in KINDS.items()}
#: checks that block by themselves when they fail: every broken-data check
BLOCKING: tuple[str, ...] = tuple(name for name, kind in KINDS.items() if kind == "broken")
_NO_REFERENCE_MISSING = 0.5
#: a reference column defines a range only when at least this share of its rows hold a value
_RANGE_MIN_SHARE = 0.05


@dataclass(frozen=True)
class QualityCheck:
    """One named check: what it measured, what it tolerates, whether it passed and why."""

    name: str
    value: float
    threshold: float
    passed: bool
    detail: str
    weight: float
    blocking: bool = False

    @property
    def kind(self) -> str:
        """``broken`` (blocks) or ``changed`` (scored, reported)."""
        return "broken" if self.blocking else "changed"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["value"] = float(d["value"]) if math.isfinite(d["value"]) else None
        d["kind"] = self.kind
        return d


@dataclass(frozen=True)
class QualityReport:
    """Every check, the changed-data score in [0, 1] against ``data_quality_threshold``, and the verdict.

    ``passed``: no broken-data check failed (the data may be trained on). ``below_threshold``: the
    changed-data score is under ``data_quality_threshold`` (a ``data_quality`` trigger reason, never
    a block).
    """

    checks: tuple[QualityCheck, ...]
    score: float
    threshold: float
    passed: bool
    source: str = "current window"
    n_rows: int = 0

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.checks if not c.passed)

    @property
    def blocked_by(self) -> tuple[str, ...]:
        """Failed broken-data checks: each blocks whatever the score (:data:`BLOCKING`)."""
        return tuple(c.name for c in self.checks if not c.passed and c.blocking)

    @property
    def changed(self) -> tuple[str, ...]:
        """Failed changed-data checks: reported and scored, never a block."""
        return tuple(c.name for c in self.checks if not c.passed and not c.blocking)

    @property
    def below_threshold(self) -> bool:
        """The changed-data score is under ``data_quality_threshold``."""
        return self.score < self.threshold

    def check(self, name: str) -> QualityCheck:
        """The check called ``name``."""
        return next(c for c in self.checks if c.name == name)

    def reason(self) -> str:
        """One line: the source, each broken finding (a block) or the score and each changed finding."""
        broken = "; ".join(f"{c.name}: {c.detail}" for c in self.checks if not c.passed and c.blocking)
        if broken:
            return f"{self.source}: broken data, {broken}"
        changed = "; ".join(f"{c.name}: {c.detail}" for c in self.checks if not c.passed) or "none"
        return (f"{self.source}: changed-data score {self.score:.2f} (data_quality_threshold {self.threshold:g}), "
                f"changed {changed}")

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "threshold": self.threshold, "passed": self.passed, "source": self.source,
                "n_rows": self.n_rows, "failed": list(self.failed), "blocked_by": list(self.blocked_by),
                "changed": list(self.changed), "below_threshold": self.below_threshold,
                "checks": [c.to_dict() for c in self.checks]}

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([c.to_dict() for c in self.checks],
                            columns=["name", "kind", "value", "threshold", "passed", "detail", "weight"])


# --------------------------------------------------------------------------- hard breaks
def check_hard_breaks(current: pd.DataFrame, *, label: str | None, required: Sequence[str] = (),
                      source: str = "current window") -> None:
    """Raise when the window cannot be measured or trained on at all.

    Raises
    ------
    DataQualityError
        The window has no rows, the label column is missing, or a required column is missing;
        the message names the column and ``source`` and says how to fix it.
    """
    if len(current) == 0:
        raise DataQualityError(f"{source} has no rows; expected at least one row; add data to it, or check "
                               f"data.pattern and as_of so the window holds a batch with rows")
    shown = ", ".join(map(repr, list(current.columns)[:12])) + (" ..." if current.shape[1] > 12 else "")
    if label is not None and label not in current.columns:
        raise DataQualityError(f"label column {label!r} is missing from {source} (it has {shown}); restore it "
                               f"there, or set data.label in the profile to the label's name")
    for column in required:
        if column not in current.columns:
            raise DataQualityError(f"required column {column!r} is missing from {source} (the champion was trained "
                                   f"on it; the file has {shown}); restore the column in that file")


# --------------------------------------------------------------------------- checks
def _kind(series: pd.Series) -> str:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    return "categorical"


def _worst(values: Mapping[str, float]) -> tuple[str | None, float]:
    if not values:
        return None, 0.0
    column = max(values, key=lambda c: values[c])
    return column, float(values[column])


@dataclass(frozen=True)
class _Window:
    current: pd.DataFrame
    reference: pd.DataFrame | None
    features: tuple[str, ...]  # current columns, less label and ignored ones
    shared: tuple[str, ...]  # features also in the reference
    label: str | None
    ignored: frozenset[str]
    label_classes: frozenset | None = None
    labels_due: Any = None  # bool per row: its label should have arrived (None: every row's)
    had_values: frozenset = frozenset()  # columns that had a value before (besides the reference)
    label_problem: str | None = None  # the profile's problem_type: "binary" holds two classes
    constraints: tuple[str, ...] = ()  # data.constraints: rules every row must keep


def _schema(w: _Window) -> tuple[float, str, bool]:
    """Columns gone, or whose kind changed (a number turned to text): broken. A column without any value
    in either window has no kind to compare (an all-empty CSV column reads as float)."""
    if w.reference is None:
        return 0.0, "not applicable: no reference window", False
    ref_cols = [c for c in w.reference.columns if c not in w.ignored]
    missing = [c for c in ref_cols if c not in w.current.columns]
    changed = [f"{c} {w.reference[c].dtype} -> {w.current[c].dtype}" for c in w.shared
               if w.reference[c].notna().any() and w.current[c].notna().any()
               and _kind(w.reference[c]) != _kind(w.current[c])]
    parts = [f"missing: {', '.join(missing)}" if missing else "",
             f"kind changed: {'; '.join(changed)}" if changed else ""]
    detail = "; ".join(p for p in parts if p) or f"{len(w.shared)} columns as in the reference"
    return float(len(missing) + len(changed)), detail, True


def _new_columns(w: _Window) -> tuple[float, str, bool]:
    if w.reference is None:
        return 0.0, "not applicable: no reference window", False
    extra = [c for c in w.features if c not in w.reference.columns]
    return float(len(extra)), (f"new: {', '.join(extra)}" if extra else "no new column"), True


def _never_had_values(w: _Window, column: str) -> bool:
    """No value in the current data, none before it: a column whose feed has not started (not judged)."""
    return (column not in w.had_values and w.current[column].isna().all()
            and (w.reference is None or column not in w.reference.columns or w.reference[column].isna().all()))


def _missing_values(w: _Window) -> tuple[float, str, bool]:
    cur = {c: float(w.current[c].isna().mean()) for c in w.features if not _never_had_values(w, c)}
    if w.reference is None:
        col, worst = _worst(cur)
        return worst, (f"most missing: {col} {worst:.1%}" if col else "no feature columns"), True
    rise = {c: cur[c] - float(w.reference[c].isna().mean()) for c in w.shared if c in cur}
    col, worst = _worst(rise)
    if col is None:
        return 0.0, "no shared columns", True
    return worst, f"largest rise: {col} {cur[col] - worst:.1%} -> {cur[col]:.1%}", True


def _out_of_range(w: _Window) -> tuple[float, str, bool]:
    if w.reference is None:
        return 0.0, "not applicable: no reference window", False
    shares, no_range = {}, []
    for c in w.shared:
        if _kind(w.reference[c]) == "numeric" and _kind(w.current[c]) == "numeric":
            ref = w.reference[c].to_numpy(dtype=np.float64, na_value=np.nan)
            cur = w.current[c].to_numpy(dtype=np.float64, na_value=np.nan)
            cur = cur[~np.isnan(cur)]
            finite = ref[np.isfinite(ref)]
            if len(finite) < _RANGE_MIN_SHARE * len(ref) or len(np.unique(finite)) < 2:
                no_range.append(c)  # constant or (nearly) empty in the reference: no range to judge by
            elif len(cur):
                lo, hi = finite.min(), finite.max()
                shares[c] = float(np.count_nonzero((cur < lo) | (cur > hi)) / len(cur))
    skipped = f" (no range in the reference, not judged: {', '.join(no_range)})" if no_range else ""
    col, worst = _worst(shares)
    if col is None:
        return 0.0, f"no numeric columns to compare{skipped}", True
    return worst, f"most outside: {col} {worst:.1%} outside [{np.nanmin(w.reference[col]):.4g}, " \
                  f"{np.nanmax(w.reference[col]):.4g}]{skipped}", True


def _unseen_categories(w: _Window) -> tuple[float, str, bool]:
    if w.reference is None:
        return 0.0, "not applicable: no reference window", False
    shares, examples = {}, {}
    for c in w.shared:
        if _kind(w.reference[c]) in ("categorical", "boolean"):
            cur = w.current[c].dropna()
            if len(cur):
                seen = pd.Index(pd.unique(w.reference[c].dropna()))
                new = ~pd.Index(cur).isin(seen)
                shares[c] = float(new.mean())
                examples[c] = pd.unique(cur[new])[:3]
    col, worst = _worst(shares)
    if col is None:
        return 0.0, "no categorical columns to compare", True
    shown = f" (e.g. {', '.join(map(repr, examples[col]))})" if worst > 0 else ""
    return worst, f"most unseen: {col} {worst:.1%}{shown}", True


def _duplicate_share(frame: pd.DataFrame, cols: list[str]) -> float:
    if not cols or len(frame) == 0:
        return 0.0
    return float(pd.util.hash_pandas_object(frame[cols], index=False).duplicated().mean())


def _duplicate_rows(w: _Window) -> tuple[float, str, bool]:
    """The share of rows repeating an earlier row, as a rise over the reference's own share: real data
    repeats rows (a hotel sells the same room at the same rate); a jump in that share is what changed."""
    cols = [c for c in w.current.columns if c in w.features or c == w.label]
    if not cols or len(w.current) == 0:
        return 0.0, "no columns", True
    share = _duplicate_share(w.current, cols)
    found = f"{share:.1%} of {len(w.current):,} rows repeat an earlier row"
    if w.reference is None:
        return share, found, True
    before = _duplicate_share(w.reference, [c for c in cols if c in w.reference.columns])
    return share - before, f"{found} ({before:.1%} in the reference)", True


def _constant_columns(w: _Window) -> tuple[float, str, bool]:
    constant = [c for c in w.features if w.current[c].nunique(dropna=False) <= 1 and not _never_had_values(w, c)]
    if w.reference is not None:
        constant = [c for c in constant if c not in w.reference.columns or w.reference[c].nunique(dropna=False) > 1]
    detail = f"constant: {', '.join(constant)}" if constant else "no column became constant"
    return float(len(constant)), detail, True


def _missing_labels(w: _Window) -> tuple[float, str, bool]:
    if w.label is None:
        return 0.0, "not applicable: no label", False
    if w.label not in w.current.columns:
        return 1.0, f"label column {w.label!r} is missing", True
    labels = w.current[w.label] if w.labels_due is None else w.current[w.label][np.asarray(w.labels_due, dtype=bool)]
    if len(labels) == 0:
        return 0.0, "not applicable: every row's label is still to come (data.label_delay_batches)", False
    share = float(labels.isna().mean())
    late = "" if w.labels_due is None else f" among the {len(labels)} whose labels are due (data.label_delay_batches)"
    return share, f"{share:.1%} of rows have no {w.label!r}{late}", True


def _scalar(value: Any) -> Any:
    """A NumPy scalar as the Python value it holds (``2``, not ``np.int64(2)``), for messages."""
    return value.item() if isinstance(value, np.generic) else value


def _infinite_values(w: _Window) -> tuple[float, str, bool]:
    shares, counts = {}, {}
    for c in (*w.features, *([w.label] if w.label in w.current.columns else [])):
        if _kind(w.current[c]) == "numeric" and len(w.current):
            values = w.current[c].to_numpy(dtype=np.float64, na_value=np.nan)
            counts[c] = int(np.isinf(values).sum())
            shares[c] = counts[c] / len(values)
    col, worst = _worst(shares)
    if col is None or worst == 0:
        return 0.0, "no ±inf values", True
    return worst, f"{col}: {counts[col]:,} of {len(w.current):,} rows are ±inf", True


def _empty_columns(w: _Window) -> tuple[float, str, bool]:
    if len(w.current) == 0:
        return 0.0, "no rows", True
    empty = [c for c in w.features if w.current[c].isna().all()]
    broken = [c for c in empty if not _never_had_values(w, c)]
    if broken:
        return float(len(broken)), f"no value at all, although it had values before: {', '.join(broken)}", True
    never = f" (never had a value yet, not judged: {', '.join(empty)})" if empty else ""
    return 0.0, f"every column that had values still has them{never}", True


def _value_kind(value: Any) -> str:
    """What a label value is, for the label contract: boolean, integral, number or text."""
    value = _scalar(value)
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, numbers.Number):
        return "integral" if float(value).is_integer() else "number"
    return "text"


def _contract_breach(value: Any, known: frozenset, problem: str | None) -> str | None:
    """Why a label value never seen cannot be a class of this label (``None``: it can, a new class)."""
    kinds = {_value_kind(k) for k in known}
    kind = _value_kind(value)
    if problem == "binary" and len(known) >= 2:
        return "a binary label holds two classes"
    if kinds and kind not in kinds and not (kind == "integral" and "number" in kinds):
        return f"a {kind} value among {'/'.join(sorted(kinds))} classes"
    return None


def _new_label_values(w: _Window) -> tuple[pd.Series, dict[Any, str]] | None:
    """The labelled values no known class holds, and why each breaks the contract (if it does)."""
    if w.label_classes is None or w.label not in w.current.columns:
        return None
    labelled = w.current[w.label].dropna()
    new = labelled[~labelled.isin(list(w.label_classes))]
    return labelled, {v: _contract_breach(v, w.label_classes, w.label_problem) for v in pd.unique(new)}


def _label_values_detail(w: _Window, labelled: pd.Series, values: list, what: str) -> tuple[float, str, bool]:
    share = float(labelled.isin(values).mean()) if len(labelled) else 0.0
    if share == 0:
        return 0.0, f"every {w.label!r} value is {what}", True
    shown = ", ".join(repr(_scalar(v)) for v in values[:3])
    known = ", ".join(repr(_scalar(v)) for v in sorted(w.label_classes, key=str)[:6])
    return share, f"{share:.1%} of labelled rows have a {w.label!r} class never seen ({shown}; known: {known})", True


def _label_classes_check(w: _Window, *, breaches: bool) -> tuple[float, str, bool]:
    """Share of labelled rows with a class never seen that breaks the label contract (``breaches``) or not."""
    found = _new_label_values(w)
    if found is None:
        return 0.0, "not applicable: no label classes to compare with", False
    labelled, why = found
    values = [v for v, breach in why.items() if bool(breach) == breaches]
    value, detail, applies = _label_values_detail(w, labelled, values, "a class the label contract holds" if breaches else "a known class")
    if values:
        detail += f": {why[values[0]]}" if breaches else ": a new class, a drift a retrain learns"
    return value, detail, applies


def _unseen_labels(w: _Window) -> tuple[float, str, bool]:
    return _label_classes_check(w, breaches=True)


def _new_labels(w: _Window) -> tuple[float, str, bool]:
    return _label_classes_check(w, breaches=False)


_OPS: dict[str, Callable[[Any, Any], Any]] = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
                                               "==": operator.eq, "!=": operator.ne}
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|==|!=|>|<)\s*(\S.*?)\s*$")


def parse_constraint(text: str) -> tuple[str, str, float | str]:
    """``"age >= 0"`` as (column, operator, value); the value is a number, or text in quotes.

    Raises
    ------
    ValueError
        The rule is not ``<column> <op> <value>`` with op one of >=, <=, >, <, ==, !=.
    """
    m = _CONSTRAINT.match(str(text))
    if not m:
        raise ValueError(f"constraint {text!r} is not '<column> <op> <value>' (op one of >=, <=, >, <, ==, !=), "
                         f"e.g. 'age >= 0' or 'status != \"void\"'")
    column, op, raw = m.groups()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return column, op, raw[1:-1]
    try:
        return column, op, float(raw)
    except ValueError:
        raise ValueError(f"constraint {text!r}: the value {raw!r} is neither a number nor quoted text") from None


def _constraints(w: _Window) -> tuple[float, str, bool]:
    """Rows breaking a rule the profile declares (``data.constraints``); a missing value breaks no rule."""
    if not w.constraints:
        return 0.0, "not applicable: no data.constraints", False
    worst: tuple[int, str] = (0, "")
    for rule in w.constraints:
        column, op, value = parse_constraint(rule)
        if column not in w.current.columns:
            continue
        values = w.current[column]
        present = values.notna()
        try:
            kept = _OPS[op](values[present], value)
        except TypeError:  # text against a number: every present value breaks it
            kept = pd.Series(False, index=values[present].index)
        bad = values[present][~np.asarray(kept, dtype=bool)]
        if len(bad) > worst[0]:
            shown = ", ".join(repr(_scalar(v)) if isinstance(_scalar(v), str) else f"{_scalar(v):g}"
                              for v in pd.unique(bad)[:3])
            worst = (len(bad), f"{rule}: {len(bad):,} of {len(w.current):,} rows break it (e.g. {shown})")
    if worst[0] == 0:
        return 0.0, f"every row keeps {len(w.constraints)} rule(s)", True
    return float(worst[0]), worst[1], True


#: every named check: a function of the window returning (value, detail, applies)
CHECKS: dict[str, Callable[[_Window], tuple[float, str, bool]]] = {
    "schema": _schema,
    "missing_labels": _missing_labels,
    "infinite_values": _infinite_values,
    "empty_columns": _empty_columns,
    "unseen_labels": _unseen_labels,
    "constraints": _constraints,
    "missing_values": _missing_values,
    "out_of_range": _out_of_range,
    "unseen_categories": _unseen_categories,
    "duplicate_rows": _duplicate_rows,
    "constant_columns": _constant_columns,
    "new_columns": _new_columns,
    "new_labels": _new_labels,
}


@dataclass(frozen=True)
class QualitySettings:
    """The rules :func:`assess` judges a window by, the same for every window of a profile; each field is also a
    keyword argument of :func:`assess`.

    Attributes
    ----------
    label : str or None
        The label column (left out of the feature checks, checked for missing labels).
    threshold : float
        ``data_quality_threshold``: the report passes when its score is at least this.
    required : sequence of str
        Columns the champion needs; their absence is a hard break.
    ignore_columns : sequence of str
        Columns left out of every check (ids, the time column).
    limits : mapping, optional
        Tolerances overriding :data:`LIMITS` by check name.
    label_problem : str, optional
        The profile's ``problem_type``: with ``"binary"`` a third class breaks the label contract.
    constraints : sequence of str
        ``data.constraints``: rules such as ``"age >= 0"`` (:func:`parse_constraint`); a row breaking
        one is broken data.
    """

    label: str | None
    threshold: float
    required: Sequence[str] = ()
    ignore_columns: Sequence[str] = ()
    limits: Mapping[str, float] | None = None
    label_problem: str | None = None
    constraints: Sequence[str] = ()


def assess(current: pd.DataFrame, settings: QualitySettings | None = None, *, reference: pd.DataFrame | None,
           source: str = "current window", label_classes: Sequence[Any] | None = None,
           labels_due: Sequence[bool] | None = None, had_values: Collection[str] = (), **options: Any) -> QualityReport:
    """Run every check of :data:`CHECKS` on the current window and score it.

    Parameters
    ----------
    current : DataFrame
        The window to judge.
    settings : QualitySettings, and **options
        The rules (label, threshold, required and ignored columns, limits, label problem, constraints);
        :class:`QualitySettings`' fields as keyword arguments override it (``assess(cur, reference=ref,
        label="y", threshold=0.8)``).
    reference : DataFrame or None
        What the champion was trained on; the comparisons need it.
    source : str
        Names the data in messages (a file or window name).
    label_classes : sequence, optional
        The label's known classes (a classifier's labels in the reference and every earlier
        labelled batch); ``unseen_labels`` and ``new_labels`` apply only with them.
    labels_due : sequence of bool, optional
        Per row of ``current``, whether its label should have arrived; rows of batches still
        waiting for labels (``data.label_delay_batches``) never count as missing labels.
    had_values : collection of str
        Columns that had a value before ``current`` besides in ``reference`` (earlier batches);
        ``empty_columns`` blocks only on a column that had values.

    Raises
    ------
    DataQualityError
        A hard break (see :func:`check_hard_breaks`).
    ValueError
        ``limits`` names a check that does not exist.
    """
    rules = QualitySettings(**options) if settings is None else replace(settings, **options)
    check_hard_breaks(current, label=rules.label, required=rules.required, source=source)
    limits = {**LIMITS, **(rules.limits or {})}
    unknown = sorted(set(limits) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown quality check {unknown[0]!r} in limits; expected one of "
                         + ", ".join(repr(n) for n in CHECKS))
    window = _window(current, reference, rules, label_classes, labels_due, had_values)
    checks = []
    for name, run in CHECKS.items():
        value, detail, applies = run(window)
        limit = float(limits[name])
        checks.append(QualityCheck(name, value, limit, (not applies) or value <= limit,
                                   detail, float(WEIGHTS[name]) if applies else 0.0, name in BLOCKING))
    total = sum(c.weight for c in checks)
    score = sum(c.weight for c in checks if c.passed) / total if total else 1.0
    blocked = any(c.blocking and not c.passed for c in checks)
    return QualityReport(tuple(checks), float(score), float(rules.threshold), not blocked, source, len(current))


def _window(current: pd.DataFrame, reference: pd.DataFrame | None, rules: QualitySettings,
            label_classes: Sequence[Any] | None, labels_due: Sequence[bool] | None, had_values: Collection[str]) -> _Window:
    """What every check reads: the window, its features (less the label and ignored columns) and those the reference
    shares (an empty reference is none)."""
    label = rules.label
    ignored = set(rules.ignore_columns) | ({label} if label else set())
    features = tuple(c for c in current.columns if c not in ignored)
    if reference is not None and len(reference) == 0:
        reference = None
    shared = tuple(c for c in features if reference is not None and c in reference.columns)
    classes = frozenset(label_classes) if label_classes is not None else None
    return _Window(current, reference, features, shared, label, frozenset(ignored), classes, labels_due,
                   frozenset(had_values), rules.label_problem, tuple(rules.constraints))


def columns_with_values(frame: pd.DataFrame) -> set[str]:
    """The columns of ``frame`` holding at least one value."""
    return {c for c in frame.columns if frame[c].notna().any()}


def assess_batches(frames: Mapping[str, pd.DataFrame], *, reference: pd.DataFrame | None, label: str | None,
                   threshold: float, ignore_columns: Sequence[str] = (), label_classes: Sequence[Any] | None = None,
                   label_problem: str | None = None, unlabelled: Collection[str] = (),
                   history: Mapping[str, pd.DataFrame] | None = None, neighbours: int | None = None,
                   constraints: Sequence[str] = ()) -> list[QualityReport]:
    """:func:`assess` on each batch on its own, oldest first (``frames`` in time order, by file name).

    With ``neighbours``, each batch is compared with the ``neighbours`` batches just before it (from
    ``history``, the earlier batches in time order, then the earlier ones of ``frames``): its recent
    neighbours, not an old window. Without it, every batch is compared with ``reference``.
    What came before a batch counts as seen: its columns with values (``empty_columns`` blocks
    only a column that had values in the reference or an earlier batch) and its label classes
    (a class an earlier batch held is known, so a class that comes back is no new class).
    Batches in ``unlabelled`` (their labels are not due yet) are judged without their label.
    """
    had: set[str] = set()
    for frame in (history or {}).values():
        had |= columns_with_values(frame)
    earlier = list((history or {}).values())
    classes = set(label_classes) if label_classes is not None else None
    out = []
    for source, frame in frames.items():
        delayed = source in unlabelled
        near = reference
        if neighbours and earlier:
            recent = earlier[-neighbours:]
            near = pd.concat(recent, ignore_index=True) if len(recent) > 1 else recent[0]
        report = assess(frame, reference=near, label=None if delayed else label, threshold=threshold,
                        ignore_columns=[*ignore_columns, *([label] if delayed and label else [])], source=source,
                        label_classes=None if delayed or classes is None else sorted(classes, key=str),
                        had_values=had, label_problem=label_problem, constraints=constraints)
        out.append(report)
        earlier.append(frame)
        had |= columns_with_values(frame)
        if classes is not None and not delayed and label in frame.columns and "unseen_labels" not in report.failed:
            classes |= set(frame[label].dropna().unique())
    return out
