"""Mirror runs and registered versions into MLflow: the one module that calls ``mlflow``.

Our registry stays the source of truth (crash-safe, checksummed, with history); when a profile has
an ``mlflow:`` section, :func:`sync` copies what it holds into an MLflow tracking server:

- each run folder of the profile becomes one MLflow run (tag ``retrain.run_id``): the profile's
  resolved values, ``as_of`` and ``strategy`` as params; champion and challenger scores on the
  holdout, drift and quality scores and every gate's figures as metrics; decision, outcome, run id,
  git commit and champion before/after as tags; the run folder (executed notebooks, also rendered
  to HTML, step JSON, plots, manifest) as artifacts. A failed run ends ``FAILED``, an interrupted
  one ``KILLED``.
- each registry version becomes a version of the registered model (tag ``retrain.version``), a
  pyfunc wrapper (:class:`ChampionModel`) around the AutoGluon predictor, so
  ``mlflow.pyfunc.load_model("models:/<name>@champion")`` predicts what our champion predicts;
  alias ``champion`` follows our champion pointer (promotions and rollbacks), alias ``challenger`` our
  shadow on trial (``validation.shadow_batches``).

It is idempotent: what MLflow already holds (looked up by those tags) is never sent twice, so a
server that was unreachable is caught up by the next sync. It never raises: :func:`sync` returns a
record (``mirrored`` or ``failed`` with the error) that the runner keeps in the manifest.
Credentials are MLflow's own environment variables, read by MLflow's client; they are never
written anywhere by this module, and an error message is redacted of them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # nothing leaves this machine but the mirror itself

import mlflow  # noqa: E402  (after the telemetry switch)
import pandas as pd  # noqa: E402
import mlflow.pyfunc  # noqa: E402

from .freshproc import restore_environ  # noqa: E402
from .manifest import ManifestError, RunManifest  # noqa: E402

__all__ = ["sync", "ChampionModel", "run_params", "run_metrics", "run_status", "CREDENTIAL_VARIABLES",
           "ALIAS"]

log = logging.getLogger("retrainlib.mlflow")

#: MLflow's credential variables: read by MLflow's client, redacted from every message here
CREDENTIAL_VARIABLES = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
#: the alias that follows our champion
ALIAS = "champion"
#: the alias that follows our shadow on trial (``validation.shadow_batches``); absent while there is none
CHALLENGER_ALIAS = "challenger"
_RUN_TAG, _VERSION_TAG, _DONE_TAG = "retrain.run_id", "retrain.version", "retrain.mirror"
_PARAM_MAX = 6000  # MLflow's limit on a param value


# ---- what a run becomes ------------------------------------------------------------------------------
def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value and not prefix.endswith("hyperparameters"):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= _PARAM_MAX else text[: _PARAM_MAX - 14] + " …(truncated)"


def run_params(manifest: RunManifest) -> dict[str, str]:
    """The profile's resolved values (dotted keys), ``as_of`` and ``strategy``, as MLflow params.

    >>> p = run_params(RunManifest.from_dict({"profile": {"resolved": {"drift_threshold": 0.25, "training": {"strategy": "full"}}},
    ...                                       "as_of": "2024-06-01"}))
    >>> p["drift_threshold"], p["training.strategy"], p["strategy"], p["as_of"]
    ('0.25', 'full', 'full', '2024-06-01')
    """
    params = {k: _text(v) for k, v in _flatten(manifest.profile.resolved).items()}
    params["as_of"] = manifest.as_of or "latest"
    params["strategy"] = _text(manifest.profile.strategy)
    return params


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and value == value and abs(value) != float("inf"):
        return float(value)
    return None


def run_metrics(manifest: RunManifest) -> dict[str, float]:
    """Holdout scores (``champion.<metric>``, ``challenger.<metric>``), drift and quality scores, gate figures.

    Drift and quality scores come from step 10's output, the gates from step 30's (the run folder's
    step files, as the record names them).

    >>> run_metrics(RunManifest.from_dict({"metrics": {"champion": {"roc_auc": 0.7}, "challenger": {"roc_auc": 0.75}}}))
    {'champion.roc_auc': 0.7, 'challenger.roc_auc': 0.75}
    """
    out: dict[str, float] = {}
    for who, scores in manifest.metrics.items():
        for metric, value in (scores or {}).items():
            if _number(value) is not None:
                out[f"{who}.{metric}"] = _number(value)
    analysis, validation = manifest.analysis, manifest.validation
    if analysis:
        for key, value in (("drift_score", (analysis.drift or {}).get("score")), ("quality_score", analysis.quality_score)):
            if _number(value) is not None:
                out[key] = _number(value)
    for gate in validation.gates if validation else []:
        name = ".".join(str(p) for p in ("gate", gate.get("name"), gate.get("metric")) if p)
        for field in ("value", "threshold", "passed"):
            if _number(gate.get(field)) is not None:
                out[f"{name}.{field}"] = _number(gate[field])
    return out


def run_status(manifest: RunManifest) -> str:
    """``FINISHED``, ``FAILED``, or ``KILLED`` for a run stopped by Ctrl-C or SIGTERM.

    >>> run_status(RunManifest.from_dict({"status": "failed", "error": {"message": "interrupted (Terminated)"}}))
    'KILLED'
    """
    if manifest.status == "succeeded":
        return "FINISHED"
    message = str((manifest.error and manifest.error.message) or "")
    return "KILLED" if message.startswith("interrupted") else "FAILED"


def _tags(manifest: RunManifest) -> dict[str, str]:
    tags = {
        _RUN_TAG: manifest.run_id,
        "mlflow.runName": manifest.run_id,
        "retrain.profile": manifest.profile.name,
        "retrain.profile_sha256": manifest.profile.sha256,
        "retrain.status": manifest.status,
        "retrain.outcome": manifest.outcome,
        "retrain.exit_code": manifest.exit_code,
        "retrain.decision": manifest.decision_status,
        "retrain.reasons": "; ".join(manifest.reasons),
        "retrain.champion_before": manifest.champion_before,
        "retrain.champion_after": manifest.champion_after,
        "retrain.challenger": manifest.challenger,
        "retrain.error": manifest.error and manifest.error.line(),
        "mlflow.source.git.commit": manifest.git_commit,
        "mlflow.note.content": _note(manifest),
    }
    return {k: _text(v) for k, v in tags.items() if v not in (None, "")}


def _note(manifest: RunManifest) -> str:
    lines = [f"**{manifest.outcome or manifest.status}** — run `{manifest.run_id}` of profile "
             f"`{manifest.profile.name}`, champion {manifest.champion_before or '(none)'} → "
             f"{manifest.champion_after or '(none)'}", ""]
    lines += [f"- {r}" for r in manifest.reasons]
    lines += ["", "Executed notebooks: the `*.html` artifacts (rendered) and `*.ipynb` (as run); "
              "`manifest.json` is the audit record."]
    return "\n".join(lines)


def _ms(stamp: str | None) -> int | None:
    return int(dt.datetime.fromisoformat(stamp).timestamp() * 1000) if stamp else None


# ---- what a version becomes --------------------------------------------------------------------------
class ChampionModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper of one registry version: ``predict`` gives what our steps score with.

    Positive-class probability (binary), class probabilities (multiclass) or values (regression),
    from the version's own AutoGluon predictor, loaded strictly. Loading needs retrainlib and the
    AutoGluon release the version was trained with.
    """

    def __init__(self, features: list[str]):
        self.features = list(features)

    def load_context(self, context) -> None:
        from . import automl

        self._predictor = automl.load_predictor(context.artifacts["predictor"], strict=True)

    def predict(self, context, model_input: pd.DataFrame, params=None):
        from . import automl

        return automl.predict_scores(self._predictor, pd.DataFrame(model_input)[self.features])


# ---- the server ----------------------------------------------------------------------------------------
def _redact(text: str) -> str:
    for var in CREDENTIAL_VARIABLES:
        secret = os.environ.get(var)
        if secret:
            text = text.replace(secret, "***")
    return text


def _check_reachable(uri: str, timeout: float) -> None:
    """Fail fast (one short request, no retries) when nothing answers at ``uri``; any HTTP answer is fine."""
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=timeout):
            pass
    except urllib.error.HTTPError:
        pass  # a proxy asking for credentials on /health still means the server is there


@contextlib.contextmanager
def _bounded(settings) -> Iterator[None]:
    """MLflow's HTTP timeout and retries from the profile, for the duration of one sync."""
    values = {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, round(settings.timeout_seconds))),
              "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(settings.retries),
              "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
              "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # stdout is `retrain run --json`'s
              "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    quiet, level = logging.getLogger("mlflow"), logging.getLogger("mlflow").level
    quiet.setLevel(logging.ERROR)  # its advice on pickling and type hints is not the user's to act on
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        quiet.setLevel(level)
        restore_environ(saved)


def _search_all(fetch) -> list:
    out, token = [], None
    while True:
        page = fetch(token)
        out.extend(page)
        token = page.token
        if not token:
            return out


class _Mirror:
    """One sync's conversation with the server."""

    def __init__(self, settings, *, model_name: str):
        from mlflow.tracking import MlflowClient

        self.uri = settings.tracking_uri
        self.experiment = settings.experiment or model_name
        self.model = settings.registered_model or model_name
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        exp = self.client.get_experiment_by_name(self.experiment)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(
            self.experiment, tags={"mlflow.experimentKind": "custom_model_development"})  # the UI's model-training view

    # runs
    def mirrored_runs(self) -> tuple[dict[str, str], list[str]]:
        """(our run id -> MLflow run id) of complete mirrors, and MLflow ids of incomplete ones."""
        runs = _search_all(lambda token: self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{_RUN_TAG}` LIKE '%'", max_results=1000, page_token=token))
        done, partial = {}, []
        for r in runs:
            if r.data.tags.get(_DONE_TAG) == "complete":
                done[r.data.tags[_RUN_TAG]] = r.info.run_id
            else:
                partial.append(r.info.run_id)
        return done, partial

    def mirror_run(self, manifest: RunManifest, run_dir: Path) -> str:
        run = self.client.create_run(self.experiment_id, start_time=_ms(manifest.started),
                                     tags={_RUN_TAG: manifest.run_id}, run_name=manifest.run_id)
        run_id = run.info.run_id
        from mlflow.entities import Metric, Param, RunTag

        stamp = _ms(manifest.finished) or int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, v, stamp, 0) for k, v in run_metrics(manifest).items()],
            params=[Param(k, v) for k, v in run_params(manifest).items()],
            tags=[RunTag(k, v) for k, v in _tags(manifest).items()],
        )
        with tempfile.TemporaryDirectory(prefix="retrain-mlflow-") as tmp:
            staged = Path(tmp) / "run"
            shutil.copytree(run_dir, staged, ignore=shutil.ignore_patterns(".*"))
            from .report import render_run

            render_run(staged)  # the executed notebooks as HTML too: MLflow's UI shows .html artifacts inline
            self.client.log_artifacts(run_id, str(staged))
        self.client.set_terminated(run_id, status=run_status(manifest), end_time=_ms(manifest.finished))
        self.client.set_tag(run_id, _DONE_TAG, "complete")  # last: a run without it is redone by the next sync
        return run_id

    # versions
    def mirrored_versions(self) -> dict[str, Any]:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.model)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            self.client.create_registered_model(
                self.model, tags={"retrain.source": "retrainlib registry (the source of truth)"},
                description="Mirrored from retrainlib's registry; alias `champion` follows its champion pointer.")
        versions = _search_all(lambda token: self.client.search_model_versions(
            f"name='{self.model}'", max_results=1000, page_token=token))
        return {v.tags[_VERSION_TAG]: v for v in versions if _VERSION_TAG in v.tags}

    def mirror_version(self, version, *, mlflow_run_id: str | None) -> str:
        """Log the pyfunc wrapper of one registry version (into its run's mirror) and register it."""
        meta = version.metadata
        if mlflow_run_id is None:  # the run that trained it is not in runs/: a small run of its own
            mlflow_run_id = self.client.create_run(self.experiment_id, run_name=f"register {version.name}",
                                                   tags={"retrain.version": version.name}).info.run_id
            self.client.set_terminated(mlflow_run_id)
        with tempfile.TemporaryDirectory(prefix="retrain-mlflow-") as tmp:
            target = Path(tmp) / f"model-{version.name}"
            mlflow.pyfunc.save_model(
                str(target), python_model=ChampionModel(meta.get("features") or []),
                artifacts={"predictor": str(version.path / "predictor")},
                pip_requirements=[f"autogluon.tabular=={(meta.get('software') or {}).get('autogluon', '')}".rstrip("="),
                                  f"mlflow=={mlflow.__version__}"],
                metadata={"retrain_version": version.name, "retrain_run_id": meta.get("run_id")},
            )
            self.client.log_artifacts(mlflow_run_id, str(target), f"model-{version.name}")
        source = f"{self.client.get_run(mlflow_run_id).info.artifact_uri}/model-{version.name}"
        tags = {_VERSION_TAG: version.name, "retrain.run_id": meta.get("run_id") or "",
                "retrain.parent": meta.get("parent") or "", "retrain.created": meta.get("created") or "",
                "retrain.strategy": meta.get("strategy") or ""}
        mv = self.client.create_model_version(self.model, source, run_id=mlflow_run_id, tags=tags,
                                              description=f"retrainlib version {version.name} (run {meta.get('run_id')})")
        return mv.version

    def point_alias(self, version_number: str | None, alias: str = ALIAS) -> str | None:
        """Alias ``alias`` (``champion``) on ``version_number`` (deleted for None); the version it was on before."""
        from mlflow.exceptions import MlflowException

        try:
            current = self.client.get_model_version_by_alias(self.model, alias).version
        except MlflowException:
            current = None
        if version_number is None:
            if current is not None:
                self.client.delete_registered_model_alias(self.model, alias)
        elif str(current) != str(version_number):
            self.client.set_registered_model_alias(self.model, alias, str(version_number))
        return None if current is None else str(current)

    # links (MLflow's UI routes)
    def run_url(self, run_id: str) -> str:
        return f"{self.uri}/#/experiments/{self.experiment_id}/runs/{run_id}"

    def model_url(self) -> str:
        return f"{self.uri}/#/models/{self.model}"


def _run_folders(runs_dir: Path, profile_name: str) -> list[tuple[RunManifest, Path]]:
    """Finished runs of this profile under ``runs/``, oldest first.

    A run still going is left for the next sync; a replay (``replay_of``) audits a run against a
    scratch registry and is not part of the model's history.
    """
    out = []
    for d in sorted(p for p in Path(runs_dir).glob(f"*-{profile_name}*") if p.is_dir()):
        try:
            m = RunManifest.load(d)
        except (OSError, ManifestError):
            continue
        if m.profile.name == profile_name and m.status != "running" and not m.replay_of:
            out.append((m, d))
    return out


def _sync_runs(m: _Mirror, record: dict[str, Any], runs_dir: Path, profile_name: str) -> dict[str, str]:
    """Mirror every finished run of the profile MLflow lacks (half-done mirrors start over); our run id -> MLflow's."""
    done, partial = m.mirrored_runs()
    for stale in partial:  # a sync that died half-way: start that run's mirror over
        m.client.delete_run(stale)
    for manifest, run_dir in _run_folders(runs_dir, profile_name):
        if manifest.run_id not in done:
            done[manifest.run_id] = m.mirror_run(manifest, run_dir)
            record["runs"][manifest.run_id] = {"run_id": done[manifest.run_id], "url": m.run_url(done[manifest.run_id])}
    return done


def _sync_versions(m: _Mirror, record: dict[str, Any], registry, done: dict[str, str]) -> None:
    """Register every version MLflow lacks (into the mirror of the run that trained it), then point the aliases."""
    mirrored = m.mirrored_versions()
    for version in registry.versions():
        if version.name not in mirrored:
            number = m.mirror_version(version, mlflow_run_id=done.get(version.metadata.get("run_id")))
            record["versions"][version.name] = number
        else:
            number = mirrored[version.name].version
        mirrored[version.name] = number
    champion = registry.champion()
    numbers = {k: str(getattr(v, "version", v)) for k, v in mirrored.items()}
    before = m.point_alias(numbers.get(champion))
    shadow = registry.shadow()  # alias challenger: the shadow on trial, or none
    record["challenger"] = {"version": shadow, "mlflow_version": numbers.get(shadow),
                            "mlflow_version_before": m.point_alias(numbers.get(shadow), CHALLENGER_ALIAS)}
    record.update(status="mirrored", champion={"version": champion, "mlflow_version": numbers.get(champion),
                                               "mlflow_version_before": before},
                  model_url=m.model_url(), experiment_url=f"{m.uri}/#/experiments/{m.experiment_id}")


def sync(settings, *, runs_dir: Path, registry, profile_name: str, model_name: str,
         current_run: str | None = None) -> dict[str, Any]:
    """Bring MLflow up to date with ``runs_dir`` and ``registry``; return what happened (never raises).

    Parameters
    ----------
    settings : MlflowSettings
        the profile's ``mlflow`` section.
    runs_dir : Path
        the ``runs/`` folder; every finished run of ``profile_name`` in it is mirrored once.
    registry : Registry
        every version is mirrored once; alias ``champion`` is moved to its champion, alias ``challenger``
        to its shadow on trial (removed while there is none).
    current_run : str, optional
        the run that asked (its MLflow link goes first in the record).

    Returns
    -------
    dict
        ``status`` (``mirrored`` or ``failed``), ``tracking_uri``, ``experiment_id``, ``run`` and
        ``run_url`` of ``current_run``, ``runs`` (every run mirrored by this sync: ours -> MLflow's
        ``run_id`` and ``url``),
        ``versions`` (ours -> MLflow version, registered by this sync), ``champion`` (the version
        alias ``champion`` points to, and ``mlflow_version_before``: where it pointed before this
        sync), ``model_url``, ``seconds``; ``error`` when it failed.
    """
    import filelock

    t0 = time.monotonic()
    record: dict[str, Any] = {"status": "failed", "tracking_uri": settings.tracking_uri, "runs": {}, "versions": {}}
    try:
        _check_reachable(settings.tracking_uri, settings.timeout_seconds)
        runs_dir.mkdir(parents=True, exist_ok=True)
        with _bounded(settings), filelock.FileLock(str(runs_dir / ".mlflow.lock"), timeout=max(60, 6 * settings.timeout_seconds)):
            m = _Mirror(settings, model_name=model_name)
            record.update(experiment=m.experiment, experiment_id=m.experiment_id, registered_model=m.model)
            done = _sync_runs(m, record, runs_dir, profile_name)
            _sync_versions(m, record, registry, done)
            if current_run in done:
                record.update(run=done[current_run], run_url=m.run_url(done[current_run]))
    except Exception as exc:  # the boundary: a mirror can never fail or block a run (like notifications)
        reason = getattr(exc, "reason", None)
        record["error"] = _redact(f"{type(exc).__name__}: {reason or exc}")[:2000]
    record["seconds"] = round(time.monotonic() - t0, 3)
    if record["status"] == "mirrored":
        log.info("mlflow %s: mirrored %d run(s) and %d version(s); alias %s -> version %s", settings.tracking_uri,
                 len(record["runs"]), len(record["versions"]), ALIAS, record["champion"]["mlflow_version"])
    else:
        log.warning("mlflow %s: could not mirror (%s); recorded in the manifest, the next run catches up",
                    settings.tracking_uri, record["error"])
    return record
