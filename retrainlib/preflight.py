"""Checks before a run writes anything: what can be known from the profile, the arguments and the folders.

:func:`check_run` is called by the runner after the profile validated and before it takes the run
lock, creates the run folder or sends a webhook. Each problem raises one :class:`ProfileError` or
:class:`DataContractError` (exit 2) naming the key, file or option, what was expected and how to fix
it — never a secret's value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import DataContractError, ProfileError
from .paths import Paths

__all__ = ["check_run", "check_batches", "check_token", "check_inside_home", "check_metrics"]

#: metrics whose values lie in [0, 1]; others are bounded only on the side of their optimum
_UNIT_INTERVAL = ("roc_auc", "accuracy", "acc", "balanced_accuracy", "average_precision", "precision", "recall", "f1",
                  "pac", "pac_score")


def check_run(prof: Any, paths: Paths, profile_path: Path, *, as_of: str | None, data: bool = True) -> None:
    """Everything a run can check before it writes; raises on the first problem (exit 2).

    ``data=False`` (a rollback by hand, which reads no batch) leaves the batches unchecked: broken
    data must never stand in the way of going back to the previous champion.
    """
    from .data import parse_as_of

    try:
        parse_as_of(as_of)
    except DataContractError:
        raise DataContractError(f"--as-of {as_of!r} is not a date; expected e.g. 2024-03-10 or 2024-03-10T12:00") from None
    check_inside_home(paths, prof.registry, "registry", profile_path)
    if data:
        check_batches(prof, paths, profile_path, as_of=as_of)
    check_metrics(prof, profile_path)
    check_token(prof.notify.token_env)
    url = prof.notify.webhook_url
    if url is not None:
        from urllib.parse import urlsplit

        from .notify import redact_url

        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise ProfileError(f"{profile_path}: notify.webhook_url {redact_url(url)!r} is not an http(s) URL with a host; "
                               "give e.g. https://hooks.example.com/retrain")


def check_batches(prof: Any, paths: Paths, profile_path: Path, *, as_of: str | None) -> None:
    """The batches folder inside the home and there; every batch readable, names unique, time order kept."""
    check_inside_home(paths, prof.data.batches, "data.batches", profile_path)
    folder = paths.resolve(prof.data.batches)
    if not folder.is_dir():
        raise DataContractError(
            f"batches folder {folder} (data.batches in {profile_path}) does not exist; create it, point "
            "data.batches at your data, or run `retrain demo-data` for the demo"
        )
    if not any(f.is_file() for f in folder.glob(prof.data.pattern)):
        raise DataContractError(f"no files match data.pattern {prof.data.pattern!r} in {folder} ({profile_path}); "
                                "check data.pattern and data.batches")
    from .data import list_batches

    list_batches(prof.data, paths, as_of=as_of)  # every batch readable, named columns unique, time order kept


def check_inside_home(paths: Paths, value: str, key: str, profile_path: Path) -> None:
    """``value`` (a profile path) must lie inside the project home, read without following links.

    A folder that lives elsewhere can be linked into the home (``ln -s /data/loans data/loans``).
    """
    home = os.path.normpath(paths.home)
    full = os.path.normpath(paths.resolve(value))
    if os.path.commonpath([home, full]) != home:
        raise ProfileError(
            f"{profile_path}: {key} = {value!r} lies outside the project home {home}; give a path inside it "
            f"(link a folder that lives elsewhere into the home, e.g. ln -s {full} {home}/{Path(full).name})"
        )


def check_token(token_env: str | None) -> None:
    """A webhook token must be usable as an HTTP header value; the message names the variable, never the value."""
    if not token_env:
        return
    token = os.environ.get(token_env)
    if token is None:
        return  # recorded as a failed notification when the run ends (nothing is sent)
    bad = [c for c in token if ord(c) < 0x20 or ord(c) == 0x7F]
    if not token.strip() or bad or token != token.strip():
        what = ("is empty" if not token.strip() else
                "ends or starts with a carriage return, newline or space (e.g. read from a file with CRLF line ends)"
                if token != token.strip() else "holds control characters")
        raise ProfileError(
            f"environment variable {token_env} (notify.token_env) {what}: it cannot be sent as an HTTP header; "
            f"set it again without them (e.g. export {token_env}=\"$(tr -d '\\r\\n' < token-file)\")"
        )


def check_metrics(prof: Any, profile_path: Path) -> None:
    """eval_metric and the validation metrics are metrics AutoGluon knows; each minimum is a value the metric can take."""
    from autogluon.core.metrics import METRICS

    problem_type = prof.training.problem_type
    known = sorted(METRICS[problem_type]) if problem_type else sorted({m for ms in METRICS.values() for m in ms})
    where = f"for problem_type {problem_type}" if problem_type else "for any problem type"
    for key, names in (("training.eval_metric", [prof.training.eval_metric]),
                       ("validation.metrics", list(prof.validation.metrics)),
                       ("validation.minimum", list(prof.validation.minimum))):
        for name in names:
            if name not in known:
                raise ProfileError(f"{profile_path}: {key} {name!r} is not a metric AutoGluon knows {where}; "
                                   f"expected one of {', '.join(known)}")
    for name, floor in prof.validation.minimum.items():
        if name in _UNIT_INTERVAL or name.startswith(("precision_", "recall_", "f1_")):
            ok, allowed = 0.0 <= floor <= 1.0, "between 0 and 1"
        elif name in ("mcc", "r2", "quadratic_kappa"):
            ok, allowed = floor <= 1.0, "at most 1"
        else:
            ok, allowed = floor >= 0.0, "at least 0"
        if not ok:
            raise ProfileError(f"{profile_path}: validation.minimum.{name} = {floor!r} is out of range; {name} takes "
                               f"values {allowed}")
