"""The MLflow mirror against a real ``mlflow server`` (SQLite backend, local artifact root, free port).

One module fixture plays the demo with a profile that names a tracking server, every command a
real ``retrain`` child process with MLflow credentials in its environment:

1. ``retrain run`` at week 10 while the server is down: the run bootstraps v0001 and succeeds; its
   manifest records the mirror's failure.
2. the server starts (the profile names a local proxy in front of it that keeps the requests'
   ``Authorization`` headers in memory); ``retrain run`` at week 22 promotes v0002 and catches up run 1.
3. ``retrain status`` prints the links.
4. ``retrain rollback`` makes v0001 champion again and moves MLflow's alias with it.
5. a run on a broken batch fails at step 10 and is mirrored as FAILED.
6. a run stopped by SIGTERM in step 10; the next sync mirrors it as KILLED, and one more finds nothing to do.
7. an outage: the proxy stops answering while ``retrain rollback --to v0002`` runs, so MLflow's alias
   stays on v0001; ``retrain mlflow-sync`` (server back) moves it to v0002 and mirrors the rollback's
   run, and a second ``retrain mlflow-sync`` finds it in sync (exit 0 both times).

The tests then read the server through ``MlflowClient`` and ``mlflow.pyfunc.load_model``, and
headless Chromium takes the README's screenshots of MLflow's UI.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from retrainlib.demo import week_end
from tests.conftest import REPO, make_home
from tests.hold_points import KernelHold, wait_until
from tests.shared_runs import PROFILE, child_env, retrain
from tests.test_browser import CHROMIUM, require_chromium

pytestmark = pytest.mark.slow

mlflow = pytest.importorskip("mlflow", reason="the optional extra: pip install -r requirements-mlflow.txt (make setup does)")
from mlflow.tracking import MlflowClient  # noqa: E402

from retrainlib import automl, mlflow_mirror  # noqa: E402
from retrainlib.manifest import RunManifest  # noqa: E402
from retrainlib.profiles import load_profile  # noqa: E402
from retrainlib.registry import Registry  # noqa: E402

EXPERIMENT, REGISTERED = "loan-demo", "loan-default-demo-mirror"
#: MLflow credentials of this session (random per session): no file or log may ever hold them
TOKEN = f"mlflow-canary-token-{os.urandom(8).hex()}"
PASSWORD = f"mlflow-canary-password-{os.urandom(8).hex()}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """``mlflow server`` in its own process group, SQLite and artifacts under ``root``; always stopped."""

    def __init__(self, root: Path, port: int):
        self.root, self.port, self.url, self.proc = root, port, f"http://127.0.0.1:{port}", None
        root.mkdir(parents=True, exist_ok=True)

    def start(self, *, wait: float = 300) -> None:
        self.log = open(self.root / "server.log", "ab")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
             "--artifacts-destination", str(self.root / "artifacts"), "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1"],
            cwd=self.root, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            env=dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true"))
        deadline = time.monotonic() + wait  # an upper bound only: a busy machine just takes longer
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.root / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"mlflow server did not answer /health within {wait} s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        if self.proc:
            self.log.close()


class RecordingProxy:
    """The tracking URI the profile names: forwards every request to the server and keeps each request's
    ``Authorization`` header in memory, to show the credentials were used (and only sent, never stored)."""

    def __init__(self, port: int, upstream: str):
        self.headers: list[str | None] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.headers.append(self.headers.get("Authorization"))
                sent = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection", "content-length")}
                request = urllib.request.Request(upstream + self.path, data=body if body else None, headers=sent,
                                                 method=self.command)
                try:
                    response = urllib.request.urlopen(request, timeout=600)
                except urllib.error.HTTPError as exc:
                    response = exc
                data = response.read()
                self.send_response(response.status)
                for k, v in response.headers.items():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = forward

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _git_init(home: Path) -> None:
    git = ["git", "-c", "user.email=test@example.invalid", "-c", "user.name=test"]
    for args in (["init", "-q"], ["add", "params"], ["commit", "-q", "-m", "profile"]):
        subprocess.run([*git, *args], cwd=home, check=True, capture_output=True)


def _runs(client: MlflowClient, experiment_id: str, view=None) -> list:
    from mlflow.entities import ViewType

    return client.search_runs([experiment_id], run_view_type=view or ViewType.ACTIVE_ONLY, order_by=["attributes.start_time ASC"])


def _state(client: MlflowClient) -> dict:
    versions = client.search_model_versions(f"name='{REGISTERED}'")
    return {"alias": client.get_model_version_by_alias(REGISTERED, "champion").tags["retrain.version"],
            "versions": sorted(v.tags["retrain.version"] for v in versions)}


@pytest.fixture(scope="module")
def played(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    server, proxy_port, proxy = MlflowServer(root / "server", free_port()), free_port(), None
    home = make_home(root / "home", mlflow={"tracking_uri": f"http://127.0.0.1:{proxy_port}", "experiment": EXPERIMENT,
                                            "registered_model": REGISTERED, "timeout_seconds": 60})
    _git_init(home)
    log = root / "commands.log"
    env = child_env(MLFLOW_TRACKING_TOKEN=TOKEN)
    out: dict = {"home": home, "root": root, "server": server, "log": log, "tracking_uri": f"http://127.0.0.1:{proxy_port}"}
    try:
        out["code1"] = retrain(home, "run", "--profile", PROFILE, "--as-of", week_end(10).isoformat(), log=log, env=env).returncode
        server.start()
        proxy = out["proxy"] = RecordingProxy(proxy_port, server.url)
        out["code2"] = retrain(home, "run", "--profile", PROFILE, "--as-of", week_end(22).isoformat(), log=log, env=env).returncode
        client = MlflowClient(server.url, server.url)
        out["before_rollback"] = _state(client)
        mlflow.set_tracking_uri(server.url)
        model = mlflow.pyfunc.load_model(f"models:/{REGISTERED}@champion")
        runs = sorted(d for d in (home / "runs").iterdir() if d.is_dir())
        holdout = json.loads((runs[1] / "10-analyze-drift.json").read_text())["windows"]["holdout"]
        out["holdout"] = pd.concat([pd.read_parquet(home / b["path"]) for b in holdout], ignore_index=True)
        out["pyfunc_champion"] = np.asarray(model.predict(out["holdout"]))
        status = subprocess.run([sys.executable, "-m", "retrainlib.cli", "status", "--profile", PROFILE, "--home", str(home)],
                                capture_output=True, text=True, env=env, timeout=120)
        out["status"] = status
        out["code_rollback"] = retrain(home, "rollback", "--profile", PROFILE, log=log, env=child_env(
            MLFLOW_TRACKING_USERNAME="canary-user", MLFLOW_TRACKING_PASSWORD=PASSWORD)).returncode
        out["after_rollback"] = _state(client)
        broken = home / f"data/demo/batches/{week_end(23)}.parquet"
        pd.read_parquet(broken).drop(columns=["credit_score"]).to_parquet(broken)
        out["code3"] = retrain(home, "run", "--profile", PROFILE, "--as-of", week_end(23).isoformat(), log=log, env=env).returncode
        out["code_killed"] = _stopped_run(home, log, env)
        prof = load_profile(home / PROFILE)
        registry = Registry(home / "models", prof.model_name)
        out["catch_up"], out["resync"] = (
            mlflow_mirror.sync(prof.mlflow, runs_dir=home / "runs", registry=registry, profile_name=prof.name,
                               model_name=prof.model_name) for _ in range(2))
        proxy.close()  # 7. an outage while the champion moves: the alias is left stale
        out["code_outage_rollback"] = retrain(home, "rollback", "--profile", PROFILE, "--to", "v0002", log=log, env=env).returncode
        out["stale"] = _state(client)
        proxy = RecordingProxy(proxy_port, server.url)  # the server answers again
        out["syncs"] = [subprocess.run([sys.executable, "-m", "retrainlib.cli", "mlflow-sync", "--profile", PROFILE, "--home",
                                        str(home)], capture_output=True, text=True, env=env, timeout=600) for _ in range(2)]
        out["synced"] = _state(client)
        out["sync_headers"] = list(proxy.headers)
        out["runs"] = sorted(d for d in (home / "runs").iterdir() if d.is_dir() and not d.name.endswith("-rollback"))
        out["rollback_runs"] = sorted((home / "runs").glob("*-rollback"))  # `retrain rollback` is a run of its own
        out["client"] = client
        out["experiment_id"] = client.get_experiment_by_name(EXPERIMENT).experiment_id
        if CHROMIUM:
            out["shots"] = _screenshots(out)
        yield out
    finally:
        if proxy:
            proxy.close()
        server.stop()


def _stopped_run(home: Path, log: Path, env: dict) -> int:
    """``retrain run`` stopped by SIGTERM while its first step's kernel is held before a cell
    (:class:`tests.hold_points.KernelHold`): inside a step whatever the machine's speed; its exit code."""
    hold = KernelHold(home.parent / "kernel-hold")
    hold.arm()
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "retrainlib.cli", "run", "--profile", PROFILE, "--as-of",
                                 week_end(22).isoformat(), "--home", str(home)], cwd=home, stdout=out, stderr=subprocess.STDOUT,
                                env={**env, **hold.env()})
        try:
            wait_until(hold.held_pid, "the run's kernel did not reach the hold before a cell", procs=[proc])
        finally:
            proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=300)


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def _by_run_id(played) -> dict:
    runs = _runs(played["client"], played["experiment_id"])
    return {r.data.tags["retrain.run_id"]: r for r in runs}


# ---- the profile section ---------------------------------------------------------------------------
def test_a_tracking_uri_with_a_password_is_refused_without_repeating_it(tmp_path):
    from retrainlib.errors import ProfileError

    home = make_home(tmp_path / "home", mlflow={"tracking_uri": f"https://ci:{PASSWORD}@mlflow.example", "experimnt": "x"})
    with pytest.raises(ProfileError, match="mlflow.tracking_uri: must not hold credentials") as err:
        load_profile(home / PROFILE)
    assert PASSWORD not in str(err.value)
    assert "mlflow.experimnt = 'x': expected one of 'experiment', 'registered_model'" in str(err.value)


def test_without_an_mlflow_section_the_mirror_is_off_and_experiment_and_model_default_to_the_model_name(tmp_path):
    home = make_home(tmp_path / "home")
    assert load_profile(home / PROFILE).mlflow is None
    home = make_home(tmp_path / "other", mlflow={"tracking_uri": "http://127.0.0.1:5000/"})
    settings = load_profile(home / PROFILE).mlflow
    assert settings.tracking_uri == "http://127.0.0.1:5000" and settings.experiment is None and settings.registered_model is None


def test_a_replay_neither_mirrors_nor_is_mirrored(tmp_path):
    from retrainlib.replay import _replay_profile

    content = yaml.safe_dump({"name": "demo", "mlflow": {"tracking_uri": "http://127.0.0.1:5000"}})
    raw, overrides = _replay_profile(RunManifest.from_dict({"run_id": "r1", "profile": {"content": content}}), tmp_path / "scratch")
    assert "mlflow" not in raw and any(o.startswith("mlflow: removed") for o in overrides)
    for name, extra in (("20240101T000000Z-demo", {}), ("20240101T000000Z-demo-replay", {"replay_of": "x"}),
                        ("20240102T000000Z-demo", {"status": "running"})):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "manifest.json").write_text(json.dumps(
            {"run_id": name, "profile": {"name": "demo"}, "status": "succeeded", **extra}))
    assert [m.run_id for m, _ in mlflow_mirror._run_folders(tmp_path / "runs", "demo")] == ["20240101T000000Z-demo"]


# ---- the mirror's record and catch-up ------------------------------------------------------------
def test_with_the_server_down_the_run_succeeds_and_its_manifest_records_the_mirror_failure(played):
    first = _manifest(played["runs"][0])
    assert played["code1"] == 0 and first["outcome"] == "bootstrapped"
    rec = first["mlflow"]
    assert rec["status"] == "failed" and rec["tracking_uri"] == played["tracking_uri"]
    assert "Connection refused" in rec["error"], rec
    assert rec["runs"] == {} and rec["versions"] == {}


def test_the_next_run_with_the_server_up_catches_up_the_missed_run_and_version(played):
    first, second = (_manifest(d) for d in played["runs"][:2])
    assert played["code2"] == 0 and second["outcome"] == "promoted"
    rec = second["mlflow"]
    assert rec["status"] == "mirrored", rec
    assert set(rec["runs"]) == {first["run_id"], second["run_id"]}
    assert set(rec["versions"]) == {"v0001", "v0002"}
    assert rec["champion"]["version"] == "v0002" and rec["run"] == rec["runs"][second["run_id"]]["run_id"]


def test_re_mirroring_never_duplicates_runs_or_versions(played):
    assert played["resync"]["status"] == "mirrored"
    assert played["resync"]["runs"] == {} and played["resync"]["versions"] == {}
    from mlflow.entities import ViewType

    every = _runs(played["client"], played["experiment_id"], ViewType.ALL)
    ours = [r.data.tags["retrain.run_id"] for r in every]
    assert len(played["runs"]) == 4 and len(played["rollback_runs"]) == 2
    runs = [*played["runs"], *played["rollback_runs"]]
    assert sorted(ours) == sorted(_manifest(d)["run_id"] for d in runs)  # four runs and the two rollbacks, each once
    assert played["after_rollback"]["versions"] == ["v0001", "v0002"]
    assert _state(played["client"])["versions"] == ["v0001", "v0002"]


def test_a_run_stopped_by_sigterm_is_mirrored_as_killed_by_the_next_sync(played):
    m = _manifest(played["runs"][3])
    assert played["code_killed"] == 143 and m["status"] == "failed" and m["error"]["message"] == "interrupted (Terminated)"
    assert m["mlflow"] is None  # a stopping run does not wait for MLflow
    assert list(played["catch_up"]["runs"]) == [m["run_id"]]
    run = _by_run_id(played)[m["run_id"]]
    assert run.info.status == "KILLED" and run.data.tags["retrain.outcome"] == "failed"


# ---- what MLflow holds -----------------------------------------------------------------------------
def test_each_run_is_one_mlflow_run_with_params_metrics_tags_and_artifacts(played):
    client, by_id = played["client"], _by_run_id(played)
    for run_dir, outcome in zip(played["runs"][:2], ("bootstrapped", "promoted")):
        m = _manifest(run_dir)
        run = by_id[m["run_id"]]
        assert run.info.status == "FINISHED" and run.info.run_name == m["run_id"]
        params = run.data.params
        assert params["as_of"] == m["as_of"] and params["strategy"] == "sliding_window"
        assert params["drift_threshold"] == "0.25" and params["training.window_batches"] == "6"
        assert json.loads(params["validation.metrics"]) == ["roc_auc", "log_loss"]
        tags = run.data.tags
        record = RunManifest.load(run_dir)
        assert tags["retrain.outcome"] == outcome and tags["retrain.decision"] == record.analysis.decision.status
        assert tags["retrain.champion_after"] == m["champion_after"] and tags.get("retrain.champion_before") == m["champion_before"]
        assert tags["mlflow.source.git.commit"] == m["git_commit"] and len(m["git_commit"]) >= 40
        metrics = run.data.metrics
        for who, scores in m["metrics"].items():
            for metric, value in scores.items():
                assert metrics[f"{who}.{metric}"] == pytest.approx(value)
        assert metrics["quality_score"] == pytest.approx(record.analysis.quality_score)
        gates = record.validation.gates
        assert gates and all(metrics[f"gate.{g['name']}" + (f".{g['metric']}" if g["metric"] else "") + ".passed"]
                             == float(g["passed"]) for g in gates)
        files = {a.path for a in client.list_artifacts(run.info.run_id)}
        for step in ("10-analyze-drift", "20-retrain-model", "30-validate-challenger", "40-promote-or-rollback"):
            assert {f"{step}.ipynb", f"{step}.html", f"{step}.json"} <= files, files
        assert {"manifest.json", "30-validation.png"} <= files
    second = by_id[_manifest(played["runs"][1])["run_id"]]
    assert second.data.metrics["drift_score"] == pytest.approx(RunManifest.load(played["runs"][1]).analysis.drift["score"])
    assert second.data.metrics["challenger.roc_auc"] > second.data.metrics["champion.roc_auc"]


def test_a_failed_run_is_mirrored_as_failed_with_its_error(played):
    m = _manifest(played["runs"][2])
    assert played["code3"] == 2 and m["status"] == "failed" and m["mlflow"]["status"] == "mirrored"  # a broken data contract
    run = _by_run_id(played)[m["run_id"]]
    assert run.info.status == "FAILED" and run.data.tags["retrain.outcome"] == "failed"
    assert "credit_score" in run.data.tags["retrain.error"]
    assert "10-analyze-drift.ipynb" in {a.path for a in played["client"].list_artifacts(run.info.run_id)}


def test_each_version_is_a_model_version_linked_to_our_version_and_run(played):
    client, by_id = played["client"], _by_run_id(played)
    versions = {v.tags["retrain.version"]: v for v in client.search_model_versions(f"name='{REGISTERED}'")}
    assert sorted(versions) == ["v0001", "v0002"]
    for name, run_dir in zip(("v0001", "v0002"), played["runs"][:2]):
        run_id = _manifest(run_dir)["run_id"]
        assert versions[name].tags["retrain.run_id"] == run_id
        assert versions[name].run_id == by_id[run_id].info.run_id
    assert versions["v0002"].tags["retrain.parent"] == "v0001"


def test_alias_champion_is_on_the_promoted_version_and_follows_retrain_rollback(played):
    assert played["before_rollback"]["alias"] == "v0002"
    assert played["code_rollback"] == 7  # outcome rolled-back
    assert played["after_rollback"]["alias"] == "v0001"
    assert "mlflow: alias champion -> version" in played["log"].read_text()


def test_retrain_mlflow_sync_moves_a_champion_alias_left_stale_by_an_outage_and_then_finds_it_in_sync(played):
    rollback = _manifest(played["rollback_runs"][1])
    assert played["code_outage_rollback"] == 7 and rollback["champion_after"] == "v0002"
    assert rollback["mlflow"]["status"] == "failed" and "Connection refused" in rollback["mlflow"]["error"]
    assert played["stale"] == {"alias": "v0001", "versions": ["v0001", "v0002"]}  # MLflow did not hear of it
    first, second = played["syncs"]
    assert first.returncode == 0, first.stderr
    number = played["client"].get_model_version_by_alias(REGISTERED, "champion").version
    assert played["synced"] == {"alias": "v0002", "versions": ["v0001", "v0002"]}
    assert first.stdout.splitlines()[-1].startswith(
        f"mlflow {played['tracking_uri']}: mirrored 1 run(s) and 0 version(s); alias champion -> version {number} (v0002), "
        f"moved from version ")
    assert rollback["run_id"] in _by_run_id(played)  # the rollback's run caught up too
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[-1] == (f"mlflow {played['tracking_uri']}: already in sync; alias champion -> "
                                              f"version {number} (v0002); {played['tracking_uri']}/#/models/{REGISTERED}")
    assert f"Bearer {TOKEN}" in played["sync_headers"]  # MLflow's own credential variables, as a run uses them


def test_retrain_mlflow_sync_refuses_a_profile_without_an_mlflow_section_and_fails_when_the_server_is_down(tmp_path):
    home = make_home(tmp_path / "plain")
    out = subprocess.run([sys.executable, "-m", "retrainlib.cli", "mlflow-sync", "--home", str(home), "--profile", PROFILE],
                         capture_output=True, text=True, env=child_env(), timeout=300)
    assert out.returncode == 2 and out.stderr.strip() == (
        f"retrain: error: {PROFILE}: no mlflow: section, so nothing is mirrored; add mlflow.tracking_uri (docs/guides/mlflow.md) "
        "to mirror this profile's runs and versions"), out.stderr
    down = make_home(tmp_path / "down", mlflow={"tracking_uri": f"http://127.0.0.1:{free_port()}"})
    out = subprocess.run([sys.executable, "-m", "retrainlib.cli", "mlflow-sync", "--home", str(down), "--profile", PROFILE],
                         capture_output=True, text=True, env=child_env(), timeout=300)
    assert out.returncode == 1 and out.stdout == "", out.stdout
    assert "could not mirror" in out.stderr and "Connection refused" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_pyfunc_load_of_the_champion_alias_predicts_what_our_champion_predicts_on_the_holdout(played):
    home, holdout = played["home"], played["holdout"]
    registry = Registry(home / "models", "loan-default-demo")
    ours = automl.predict_scores(registry.load("v0002"), holdout[registry.version("v0002").metadata["features"]])
    assert len(ours) == len(holdout) > 100
    np.testing.assert_allclose(played["pyfunc_champion"], ours, rtol=0, atol=1e-12)


def test_status_shows_the_mlflow_links(played):
    status = played["status"]
    assert status.returncode == 0, status.stderr
    second = _manifest(played["runs"][1])
    assert second["mlflow"]["run_url"] in status.stdout
    assert f"{played['tracking_uri']}/#/models/{REGISTERED}" in status.stdout


# ---- credentials -----------------------------------------------------------------------------------
def test_mlflow_credentials_in_the_environment_reach_no_file_and_no_log(played):
    basic = base64.b64encode(f"canary-user:{PASSWORD}".encode())
    seen = set(played["proxy"].headers)
    assert f"Bearer {TOKEN}" in seen and f"Basic {basic.decode()}" in seen  # the runs and the rollback used them
    secrets = [TOKEN.encode(), PASSWORD.encode(), basic]
    scanned = 0
    for folder in (played["home"], played["root"]):  # the home, the server's database, artifacts and log, our logs
        for path in folder.rglob("*"):
            if path.is_file() and ".git" not in path.parts:
                data = path.read_bytes()
                assert not any(s in data for s in secrets), path
                scanned += 1
    assert scanned > 100
    assert any(p.name == "mlflow.db" for p in played["root"].rglob("*"))


# ---- the UI ----------------------------------------------------------------------------------------
def _screenshots(played) -> dict:
    """The run's notebook as MLflow's UI shows it, and the registered model's page (headless Chromium)."""
    second = _manifest(played["runs"][1])
    shots = {}
    run_url = second["mlflow"]["run_url"].replace(played["tracking_uri"], played["server"].url)  # the server itself
    pages = {"run": f"{run_url}/artifacts/10-analyze-drift.html",
             "model": f"{played['server'].url}/#/models/{REGISTERED}"}
    for name, url in pages.items():
        out = played["root"] / f"mlflow-{name}.png"
        base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                f"--user-data-dir={played['root'] / 'chromium'}", "--window-size=1600,1000", "--virtual-time-budget=30000"]
        shot = subprocess.run([*base, f"--screenshot={out}", url], capture_output=True, text=True, timeout=180)
        dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=180)
        shots[name] = {"png": out, "code": shot.returncode, "stderr": shot.stderr[-2000:], "dom": dom.stdout}
        if os.environ.get("RETRAIN_UPDATE_DOCS") and out.exists():  # refresh the README's figure
            shutil.copy(out, REPO / "docs" / out.name)
    return shots


@pytest.mark.browser
def test_the_mlflow_ui_shows_the_run_with_its_executed_notebooks(played):
    require_chromium()  # skipped visibly without chromium, failed under CI
    run, model = played["shots"]["run"], played["shots"]["model"]
    assert run["code"] == 0 and run["png"].stat().st_size > 20_000, run["stderr"]
    m = _manifest(played["runs"][1])
    assert m["run_id"] in run["dom"]
    for step in ("10-analyze-drift", "20-retrain-model", "30-validate-challenger", "40-promote-or-rollback"):
        assert f"{step}.ipynb" in run["dom"] and f"{step}.html" in run["dom"]
    assert "champion" in model["dom"] and REGISTERED in model["dom"]
