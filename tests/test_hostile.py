"""Hostile input: bad profiles, data, arguments, runs, signals and secrets.

Each case asserts the exit code, one line on stderr naming the file, key, column or option, no
traceback, nothing written (no run folder, no registry, no webhook request) or — where a run had
started — a complete failed record, and the champion unchanged. Most cases are refused by the
preflight, before anything is written, so they need no fit; they call the real ``retrain`` entry
point in-process (``cli.main``). Cases that need a champion share the session's bootstrapped home.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from retrainlib import cli
from retrainlib.demo import week_end
from tests.conftest import make_home
from tests.shared_runs import MODEL, PROFILE, WebhookPeer, bootstrapped_home, child_env

BATCHES = "data/demo/batches"
TOKEN_VAR = "RETRAIN_HOSTILE_TOKEN"


@pytest.fixture(scope="module")
def template(tmp_path_factory, demo_batches: Path) -> Path:
    """A tiny project home (11 weekly batches, no registry yet), copied by every case."""
    root = tmp_path_factory.mktemp("hostile") / "home"
    shutil.copytree(demo_batches.parent, root / "data" / "demo")
    for extra in sorted((root / BATCHES).glob("*.parquet"))[11:]:
        extra.unlink()
    return make_home(root)


@pytest.fixture
def home(template: Path, tmp_path: Path) -> Path:
    target = tmp_path / "home"
    shutil.copytree(template, target)
    return target


@pytest.fixture(autouse=True)
def _keep_signal_handlers():
    """`retrain run` installs SIGTERM/SIGINT handlers; in-process calls must leave pytest's in place."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def retrain(capsys, *argv: str) -> tuple[int, str, str]:
    """The real `retrain` entry point in-process: (exit code, stdout, stderr); an escaping exception fails the test."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(err: str, *needles: str) -> str:
    lines = [l for l in err.splitlines() if l.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def snapshot(home: Path) -> dict[str, bytes]:
    """Every file under the home (lock files, empty and holding no state, aside)."""
    return {str(p.relative_to(home)): p.read_bytes() for p in home.rglob("*") if p.is_file() and not p.name.endswith(".lock")}


def set_profile(home: Path, **changes) -> None:
    path = home / PROFILE
    prof = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        target = prof
        *parents, last = key.split(".")
        for p in parents:
            target = target.setdefault(p, {})
        if value is _DELETE:
            target.pop(last, None)
        else:
            target[last] = value
    path.write_text(yaml.safe_dump(prof, sort_keys=False))


_DELETE = object()


# ---- bad profiles: refused before anything is written ---------------------------------------------

def _write_raw(home: Path, text: str | bytes) -> None:
    path = home / PROFILE
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


def _append(home: Path, text: str) -> None:
    (home / PROFILE).write_text((home / PROFILE).read_text() + text)


PROFILE_CASES = {
    "not UTF-8": (lambda h: _write_raw(h, (h / PROFILE).read_bytes().replace(b"Built-in", b"B\xfcilt-in", 1)), ["demo.yaml:", "not UTF-8"]),
    "YAML syntax error": (lambda h: _append(h, "oops: [unclosed\n"), ["demo.yaml:", "not valid YAML"]),
    "tab-indented YAML": (lambda h: _append(h, "extra:\n\t- 1\n"), ["demo.yaml:", "not valid YAML"]),
    "duplicate top-level key": (lambda h: _append(h, "drift_threshold: 0.5\n"), ["demo.yaml:", "'drift_threshold' appears twice"]),
    "duplicate nested key": (lambda h: _write_raw(h, (h / PROFILE).read_text().replace("  label: default\n", "  label: default\n  label: income\n")),
                             ["demo.yaml:", "'label' appears twice"]),
    "a list, not a mapping": (lambda h: _write_raw(h, "- name: demo\n"), ["demo.yaml", "expected a mapping"]),
    "empty file": (lambda h: _write_raw(h, ""), ["demo.yaml", "expected a mapping"]),
    "unknown key": (lambda h: set_profile(h, drift_treshold=0.2), ["drift_treshold", "expected one of"]),
    "threshold out of range": (lambda h: set_profile(h, drift_threshold=1.7), ["drift_threshold = 1.7"]),
    "threshold of the wrong type": (lambda h: set_profile(h, performance_threshold="high"), ["performance_threshold = 'high'"]),
    "required key missing": (lambda h: set_profile(h, **{"data.label": _DELETE}), ["data.label", "required"]),
    "unknown eval_metric": (lambda h: set_profile(h, **{"training.eval_metric": "roc_aux"}), ["training.eval_metric 'roc_aux'", "roc_auc"]),
    "unknown validation metric": (lambda h: set_profile(h, **{"validation.metrics": ["acuracy"]}), ["validation.metrics 'acuracy'"]),
    "validation.minimum above 1": (lambda h: set_profile(h, **{"validation.minimum": {"roc_auc": 1.5}}), ["validation.minimum.roc_auc = 1.5"]),
    "validation.minimum below 0": (lambda h: set_profile(h, **{"validation.minimum": {"log_loss": -0.2}}), ["validation.minimum.log_loss = -0.2"]),
    "batches folder missing": (lambda h: set_profile(h, **{"data.batches": "data/nowhere"}), ["data/nowhere", "data.batches", "does not exist"]),
    "batches outside the home": (lambda h: set_profile(h, **{"data.batches": "../elsewhere"}), ["data.batches = '../elsewhere'", "outside the project home"]),
    "registry outside the home": (lambda h: set_profile(h, registry="/tmp/retrain-hostile-registry"), ["registry = '/tmp/retrain-hostile-registry'", "outside the project home"]),
    "pattern matching no file": (lambda h: set_profile(h, **{"data.pattern": "*.feather"}), ["'*.feather'", "data.pattern"]),
    "webhook URL not http": (lambda h: set_profile(h, notify={"webhook_url": "ftp://hooks.example.com/x"}), ["notify.webhook_url", "not an http(s) URL"]),
    "token_env holding a token": (lambda h: set_profile(h, notify={"webhook_url": "http://127.0.0.1:9/x", "token_env": "xoxb-123 456"}), ["notify.token_env", "NAME of an environment variable"]),
    "model name with a slash": (lambda h: set_profile(h, model_name="../../etc"), ["model_name = '../../etc'"]),
    "retraining_interval zero": (lambda h: set_profile(h, retraining_interval=0), ["retraining_interval = 0"]),
    "unknown training strategy": (lambda h: set_profile(h, **{"training.strategy": "nightly"}), ["training.strategy = 'nightly'"]),
}


@pytest.mark.parametrize("case", list(PROFILE_CASES))
def test_a_bad_profile_is_one_line_exit_2_and_nothing_is_written(home, capsys, case):
    damage, needles = PROFILE_CASES[case]
    damage(home)
    before = snapshot(home)
    code, out, err = retrain(capsys, "run", "--home", str(home), "--profile", PROFILE)
    assert code == 2, (out, err)
    assert_one_line(err, "retrain: error:", *needles)
    assert snapshot(home) == before and not (home / "runs").exists() and not (home / "models").exists()


# ---- bad data: found by the preflight, named with its file and real cause ---------------------------

def _newest(home: Path) -> Path:
    return sorted((home / BATCHES).glob("*.parquet"))[-1]


def _rewrite(home: Path, change, *, which: int = -1) -> Path:
    path = sorted((home / BATCHES).glob("*.parquet"))[which]
    frame = change(pd.read_parquet(path))
    if frame is not None:
        frame.to_parquet(path, index=False)
    return path


def _to_csv(home: Path, *, encode=None, header_dup: bool = False) -> None:
    """Turn the batches into CSV files (data.pattern *.csv); optionally damage the newest."""
    for p in sorted((home / BATCHES).glob("*.parquet")):
        frame = pd.read_parquet(p)
        p.unlink()
        frame.to_csv(p.with_suffix(".csv"), index=False)
    set_profile(home, **{"data.pattern": "*.csv"})
    newest = sorted((home / BATCHES).glob("*.csv"))[-1]
    if encode:
        newest.write_bytes(encode(newest.read_bytes()))
    if header_dup:
        lines = newest.read_text().splitlines()
        lines[0] = lines[0].replace("income", "age", 1)
        newest.write_text("\n".join(lines) + "\n")


def _csv_times(home: Path, value: str) -> None:
    newest = sorted((home / BATCHES).glob("*.csv"))[-1]
    pd.read_csv(newest).assign(application_date=value).to_csv(newest, index=False)


def _duplicate_parquet_column(home: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = _newest(home)
    table = pq.read_table(path)
    pq.write_table(pa.Table.from_arrays(table.columns + [table.column("income")], names=table.column_names + ["income"]), path)


DATA_CASES = {
    "truncated Parquet": (lambda h: _newest(h).write_bytes(_newest(h).read_bytes()[:600]), ["cannot be read as parquet", "2024-03-17.parquet"]),
    "not Parquet at all": (lambda h: _newest(h).write_text("date,income\n"), ["cannot be read as parquet", "2024-03-17.parquet"]),
    "CSV not UTF-8": (lambda h: _to_csv(h, encode=lambda b: b.replace(b"north", b"n\xf6rth")), ["2024-03-17.csv", "not UTF-8"]),
    "duplicate CSV header": (lambda h: _to_csv(h, header_dup=True), ["2024-03-17.csv", "'age' more than once"]),
    "duplicate Parquet column": (_duplicate_parquet_column, ["2024-03-17.parquet", "'income' more than once"]),
    "empty CSV": (lambda h: (_to_csv(h), sorted((h / BATCHES).glob("*.csv"))[-1].write_text("")), ["2024-03-17.csv", "is empty"]),
    "time column missing": (lambda h: _rewrite(h, lambda f: f.drop(columns=["application_date"])), ["time column 'application_date' is missing", "2024-03-17.parquet"]),
    "time column not timestamps": (lambda h: (_to_csv(h), _csv_times(h, "soon")), ["'application_date'", "not timestamps", "2024-03-17.csv"]),
    "time column turned to text in a Parquet batch": (lambda h: _rewrite(h, lambda f: f.assign(application_date="soon")),
                                                      ["column 'application_date' is timestamp in batch", "but text in batch", "2024-03-17.parquet"]),
    "a row dated in the future": (lambda h: _rewrite(h, lambda f: f.assign(application_date=f.application_date.where(f.index > 0, pd.Timestamp("2099-01-01"))), which=5),
                                  ["2024-02-11.parquet", "in the future"]),
    "batch contents not following their names": (
        lambda h: _rewrite(h, lambda f: f.assign(application_date=f.application_date - pd.Timedelta(days=60)), which=8),
        ["out of time order", "2024-03-03.parquet"]),
    "a numeric column turned to text": (lambda h: _rewrite(h, lambda f: f.assign(income=f.income.map(lambda v: f"{v:.0f} EUR"))),
                                        ["column 'income' is numeric in batch", "2024-01-07.parquet", "but text in batch", "2024-03-17.parquet"]),
    "a file the pattern matches that is neither format": (
        lambda h: (set_profile(h, **{"data.pattern": "*"}), (h / BATCHES / "notes.txt").write_text("hi")), ["notes.txt", "neither .parquet nor .csv"]),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data_is_refused_before_the_run_naming_the_file_and_the_cause(home, capsys, case):
    damage, needles = DATA_CASES[case]
    damage(home)
    before = snapshot(home)
    code, out, err = retrain(capsys, "run", "--home", str(home), "--profile", PROFILE)
    assert code == 2, (out, err)
    assert_one_line(err, "retrain: error:", *needles)
    assert snapshot(home) == before and not (home / "runs").exists()


# ---- bad arguments ---------------------------------------------------------------------------------

ARGUMENT_CASES = {
    "malformed --as-of": (["run", "--as-of", "last tuesday"], ["--as-of 'last tuesday'", "not a date"]),
    "impossible --as-of date": (["run", "--as-of", "2024-13-45"], ["--as-of '2024-13-45'"]),
    "--cron that is no crontab": (["schedule", "--cron", "every day"], ["--cron 'every day'", "not a crontab expression"]),
    "--cron with six fields": (["schedule", "--cron", "0 0 6 * * *"], ["--cron '0 0 6 * * *'"]),
    "--cron and --every-minutes": (["schedule", "--cron", "0 6 * * *", "--every-minutes", "5"], ["either --cron or --every-minutes"]),
    "--every-minutes zero": (["schedule", "--every-minutes", "0"], ["--every-minutes 0 must be above 0"]),
    "rollback to an unknown version": (["rollback", "--to", "v0099"], ["v0099"]),
    "a profile that does not exist": (["run", "--profile", "params/nope.yaml"], ["nope.yaml does not exist", "demo.yaml"]),
}


@pytest.mark.parametrize("case", list(ARGUMENT_CASES))
def test_a_bad_argument_is_one_line_exit_2_blaming_the_option(home, capsys, case):
    argv, needles = ARGUMENT_CASES[case]
    before = snapshot(home)
    argv = [*argv, "--home", str(home)] + ([] if "--profile" in argv else ["--profile", PROFILE])
    code, out, err = retrain(capsys, *argv)
    assert code == 2, (out, err)
    line = assert_one_line(err, "retrain: error:", *needles)
    if "--cron" in argv or "--every-minutes" in argv:
        assert "demo.yaml" not in line  # the option is to blame, not the profile
    assert snapshot(home) == before and not (home / "runs").exists()


# ---- `retrain drift` on bad files --------------------------------------------------------------------

def _frames(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"x": rng.normal(size=300), "c": rng.choice(list("ab"), 300)})
    ref.to_csv(tmp_path / "ref.csv", index=False)
    return tmp_path / "ref.csv", ref


DRIFT_CASES = {
    "empty CSV": (lambda p, ref: p.write_text(""), ["--current file", "is empty"]),
    "one-row file": (lambda p, ref: ref.head(1).to_csv(p, index=False), ["--current file", "has 1 row(s)", "at least 10"]),
    "CSV not UTF-8": (lambda p, ref: p.write_bytes(ref.to_csv(index=False).replace("a", "\xe9").encode("latin-1")), ["--current file", "not UTF-8"]),
    "duplicate header": (lambda p, ref: p.write_text("x,x\n1,2\n"), ["--current file", "'x' more than once"]),
    "missing file": (lambda p, ref: None, ["--current file", "does not exist"]),
    "neither format": (lambda p, ref: None, ["--current file", "neither .parquet nor .csv"]),
}


@pytest.mark.parametrize("case", list(DRIFT_CASES))
def test_retrain_drift_on_a_bad_file_is_one_line_exit_2(tmp_path, capsys, case):
    damage, needles = DRIFT_CASES[case]
    ref_path, ref = _frames(tmp_path)
    current = tmp_path / ("current.json" if case == "neither format" else "current.csv")
    if case == "neither format":
        current.write_text("{}")
    damage(current, ref)
    code, out, err = retrain(capsys, "drift", "--reference", str(ref_path), "--current", str(current))
    assert code == 2, (out, err)
    assert_one_line(err, "retrain: error:", str(current), *needles)


def test_a_numeric_column_turned_to_text_in_one_batch_is_named_not_a_traceback(fast_home):
    from retrainlib import data
    from retrainlib.errors import DataContractError
    from retrainlib.paths import Paths
    from retrainlib.profiles import load_profile

    prof = load_profile(fast_home / PROFILE)
    paths = Paths(fast_home)
    batches = data.list_batches(prof.data, paths)[:8]  # (listing it now would refuse the changed schema at once)
    path = fast_home / BATCHES / f"{week_end(6)}.parquet"
    frame = pd.read_parquet(path)
    frame["income"] = frame["income"].map(lambda v: f"{v:.0f} EUR")
    frame.to_parquet(path, index=False)
    with pytest.raises(DataContractError, match=rf"column 'income' is numeric in batch {BATCHES}/{week_end(1)}.parquet but "
                                                rf"text in batch {BATCHES}/{week_end(6)}.parquet \(e.g. '\d+ EUR'\)"):
        data.load_batches(batches, paths, prof.data)


# ---- secrets ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("token", ["tok-123456\r", "tok-123456\n", "tok\r\n123456", "   ", "\ttok-123456"])
def test_a_webhook_token_that_is_no_header_value_is_refused_naming_the_variable_never_the_value(home, capsys, monkeypatch, token):
    with WebhookPeer() as peer:
        set_profile(home, notify={"webhook_url": peer.url, "token_env": TOKEN_VAR})
        monkeypatch.setenv(TOKEN_VAR, token)
        code, out, err = retrain(capsys, "run", "--home", str(home), "--profile", PROFILE)
        assert code == 2
        assert_one_line(err, "retrain: error:", f"environment variable {TOKEN_VAR} (notify.token_env)")
        assert peer.requests == []
    if token.strip():
        assert "123456" not in out + err
    assert not (home / "runs").exists()


def test_post_json_never_records_a_header_it_could_not_send():
    from retrainlib import notify

    with WebhookPeer() as peer:
        result = notify.post_json(peer.url, {"event": "failed"}, token="sekrit-token-42\r", timeout=2, retries=0)
    assert result["status"] == "failed" and "sekrit-token-42" not in json.dumps(result)
    assert peer.requests == []


def test_url_secrets_are_redacted_from_the_manifest_the_profile_copy_and_the_log(tmp_path_factory):
    """A real run of the session's bootstrapped home with a webhook URL that embeds its secrets three ways."""
    boot = bootstrapped_home(tmp_path_factory, "hostile-url-secrets")
    home = boot.home
    secrets = ["T0SECRET1", "B0SECRET2", "XyZpathSecret0123456789", "querySecret42", "userPass99"]
    url = (f"http://bot:{secrets[4]}@127.0.0.1:9/services/{secrets[0]}/{secrets[1]}/{secrets[2]}"
           f"?token={secrets[3]}&channel=ml")
    set_profile(home, notify={"webhook_url": url, "timeout_seconds": 1, "retries": 0})
    log = home.parent / "url-run.log"
    with open(log, "wb") as out:
        proc = subprocess.run([sys.executable, "-m", "retrainlib.cli", "run", "--profile", PROFILE, "--home", str(home)],
                              cwd=home, stdout=out, stderr=subprocess.STDOUT, env=child_env(), timeout=900)
    assert proc.returncode == 3, log.read_text()[-3000:]  # no retraining needed
    run_dir = sorted((home / "runs").iterdir())[-1]
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["profile"]["resolved"]["notify"]["webhook_url"] == "http://***@127.0.0.1:9/services/***/***/***?token=***&channel=ml"
    assert "services/***/***/***?token=***" in (run_dir / "profile.yaml").read_text()
    for path in [log, *run_dir.rglob("*")]:
        if path.is_file():
            text = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in text, (path, secret)


# ---- runs, records and the registry ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def champion_home(tmp_path_factory) -> Path:
    return bootstrapped_home(tmp_path_factory, "hostile-champion").home


def test_one_damaged_manifest_does_not_break_status_for_every_other_run(champion_home, tmp_path, capsys):
    home = tmp_path / "home"
    shutil.copytree(champion_home, home, symlinks=True)
    good = sorted((home / "runs").iterdir())[0]
    bad = home / "runs" / "20990101T000000Z-demo"
    bad.mkdir()
    (bad / "manifest.json").write_text('{"run_id": "20990101T000000Z-demo", "status": ')
    code, out, err = retrain(capsys, "status", "--home", str(home), "--profile", PROFILE)
    assert code == 0, err
    assert_one_line(err, "warning: skipped", str(bad / "manifest.json"))
    assert good.name in out and "champion v0001" in out


def test_replay_of_a_damaged_manifest_is_one_line_exit_2(champion_home, tmp_path, capsys):
    home = tmp_path / "home"
    shutil.copytree(champion_home, home, symlinks=True)
    run = sorted((home / "runs").iterdir())[0]
    (run / "manifest.json").write_text((run / "manifest.json").read_text()[:200])
    code, out, err = retrain(capsys, "replay", str(run))
    assert code == 2, (out, err)
    assert_one_line(err, "retrain: error:", "manifest.json")


def test_a_run_while_another_holds_the_lock_exits_75_and_writes_nothing(champion_home, tmp_path, capsys):
    from retrainlib.registry import Registry

    home = tmp_path / "home"
    shutil.copytree(champion_home, home, symlinks=True)
    runs_before = sorted(p.name for p in (home / "runs").iterdir())
    with Registry(home / "models", MODEL).run_lock(timeout=0):
        code, out, err = retrain(capsys, "run", "--home", str(home), "--profile", PROFILE)
    assert code == 75
    assert_one_line(err, "retrain: skipped:", "loan-default-demo")
    assert sorted(p.name for p in (home / "runs").iterdir()) == runs_before
    assert Registry(home / "models", MODEL).champion() == "v0001"


def test_a_data_error_found_during_a_run_exits_2_with_a_complete_failed_record(champion_home, tmp_path, capsys):
    """A broken contract only the step can see (the newest batch lost its label column) ends the run as a complete
    failed record naming the batch and column; exit 2 as for any broken data contract; the champion stays."""
    home = tmp_path / "home"
    shutil.copytree(champion_home, home, symlinks=True)
    path = sorted((home / BATCHES).glob("*.parquet"))[-1]
    pd.read_parquet(path).drop(columns=["default"]).to_parquet(path, index=False)
    proc = subprocess.run([sys.executable, "-m", "retrainlib.cli", "run", "--profile", PROFILE, "--home", str(home)],
                          cwd=home, capture_output=True, text=True, env=child_env(), timeout=900)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    run_dir = sorted((home / "runs").iterdir())[-1]
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["status"] == "failed" and m["exit_code"] == 2 and m["finished"] and m["champion_after"] == "v0001"
    assert m["error"]["message"].startswith("DataQualityError: label column 'default' is missing"), m["error"]
    assert all(s["status"] in ("succeeded", "failed", "not-run") for s in m["steps"])


# ---- the exit-code table --------------------------------------------------------------------------------

def test_every_error_class_carries_the_exit_code_of_the_readme_table():
    from retrainlib import errors

    expected = {"ProfileError": 2, "DataContractError": 2, "DataQualityError": 2, "RegistryError": 2, "ReplayError": 2,
                "IntegrityError": 8, "TrainingError": 9, "TrainingTimeout": 9, "RunLocked": 75}
    assert {name: errors.exit_code_of(name) for name in expected} == expected
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    lines = readme.splitlines()
    start = lines.index("| code | meaning |")  # the exit-code table, up to the blank line after it
    table = lines[start + 2: lines.index("", start)]
    rows = {int(line.split("|")[1]): line for line in table}
    for code in errors.EXIT_CODES:
        assert int(code) in rows or (code == 130 and "130" in rows[143]), code
    assert set(rows) == {int(c) for c in errors.EXIT_CODES} - {130}
