"""The ``retrain`` command: a thin shell over retrainlib that turns errors into one line and an exit code.

The exit codes (one table, :class:`retrainlib.errors.ExitCode`, also in README): 0 promoted or
bootstrapped, 3 no retraining needed, 4 rejected, 5 blocked by data quality, 6 champion stuck,
7 rolled back, 1 the run failed (other), 2 bad input, 8 integrity failure, 9 training failed,
75 the run lock is held, 130/143 interrupted. Each error class carries its code.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

from .durable import write_atomic
from .errors import ExitCode, ProfileError, RetrainError, RunLocked

__all__ = ["main", "EXIT_BAD_INPUT", "EXIT_LOCKED"]

EXIT_FAILED = ExitCode.FAILED
EXIT_BAD_INPUT = ExitCode.BAD_INPUT
EXIT_LOCKED = ExitCode.LOCKED
DEFAULT_PROFILE = "params/demo.yaml"
#: fewer rows than this in a file cannot be compared (the tests and the domain classifier need a few per side)
MIN_DRIFT_ROWS = 10


def _context(args):
    from .paths import Paths
    from .profiles import load_profile
    from .registry import Registry

    paths = Paths.discover(args.home)
    prof = load_profile(paths.profile(args.profile))
    registry = Registry(paths.resolve(prof.registry), prof.model_name)
    _recover_before_reading(paths.runs, registry, by=f"retrain {args.command}")
    return paths, prof, registry


def _recover_before_reading(runs: Path, registry, *, by: str) -> None:
    """What every command does before it reads: complete killed runs' records, tidy the registry.

    Never waits: while a live writer holds the registry's lock, that writer finishes its own work.
    """
    from .manifest import mark_abandoned

    mark_abandoned(runs, by=by)
    registry.recover(wait=False)


def _champion_shown(registry) -> tuple[str | None, str]:
    """The champion and how ``status`` shows it; a damaged pointer shows as such and warns on stderr."""
    problem = registry.pointer_problem()
    if problem:
        print(f"retrain: warning: {problem}", file=sys.stderr)
        return None, "(damaged CHAMPION pointer, see the warning)"
    rec = registry.champion_record() or {}
    champion = rec.get("version")
    if rec.get("smoke_pending"):
        return champion, f"{champion} (unverified: its smoke test is running)"
    return champion, champion or "(none)"


def _print_table(rows: list[dict], columns: Sequence[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns))


def _run_summary(manifest, run_dir: Path) -> dict:
    promotion = manifest.promotion
    return {
        "run": run_dir.name,
        "path": str(run_dir),
        "status": manifest.status,
        "outcome": manifest.outcome,
        "decision": manifest.decision_status,
        "reasons": manifest.reasons,
        "champion_before": manifest.champion_before,
        "champion_after": manifest.champion_after,
        "challenger": manifest.challenger,
        "deployed_refit": promotion and promotion.refit,
        "metrics": manifest.metrics,
        "error": manifest.error and manifest.error.to_dict(),
        "seconds": manifest.seconds,
    }


def _print_run(summary: dict) -> None:
    print(f"run {summary['run']}: {summary['status']}, outcome {summary['outcome']} ({summary['seconds']:.0f} s)")
    print(f"  decision: {summary['decision']}")
    for r in summary["reasons"]:
        print(f"    - {r}")
    for who, scores in (summary["metrics"] or {}).items():
        if scores:
            print(f"  {who}: " + ", ".join(f"{k}={v:.4f}" for k, v in scores.items() if isinstance(v, (int, float))))
    print(f"  champion: {summary['champion_before']} -> {summary['champion_after']}   challenger: {summary['challenger']}")
    if summary.get("deployed_refit"):
        refit = summary["deployed_refit"]
        print(f"  deployed {refit['version']}: {refit['validated']} refit on training + holdout rows ({refit['n_rows']} rows)")
    if summary["error"]:
        print(f"  error at {summary['error'].get('step')}: {summary['error'].get('message')}")
    print(f"  record: {summary['path']}")


class Terminated(BaseException):
    """SIGTERM arrived: unwinds the run like Ctrl-C, so it ends as a complete failed record."""


def _end_runs_on_signals() -> None:
    """SIGTERM (and Ctrl-C) interrupt the run once; a repeated signal cannot break the failed record being written."""
    import signal

    fired = []

    def handler(signum, frame):
        if fired:
            return
        fired.append(signum)
        # papermill's cell task, abandoned mid-reply, then dies with its kernel: asyncio would print its DeadKernelError
        # traceback ("Task exception was never retrieved") into the run's log (seen once in a loaded CI run)
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def cmd_run(args) -> int:
    from .pipeline import run_playbook

    _end_runs_on_signals()
    if args.begin or args.finish:
        return _run_in_steps(args)
    manifest, run_dir = run_playbook(args.profile, home=args.home, as_of=args.as_of, lock_timeout=args.wait)
    summary = _run_summary(manifest, run_dir)
    print(json.dumps(summary, indent=2) if args.json else "", end="\n" if args.json else "")
    if not args.json:
        _print_run(summary)
    return manifest.exit_code if manifest.exit_code is not None else EXIT_FAILED


def _run_in_steps(args) -> int:
    """``--begin``: lease the model and create the run folder (prints it); ``--finish``: close it."""
    from .pipeline import begin_run, finish_run

    if args.begin and args.finish:
        raise RetrainError("give --begin or --finish RUN_DIR, not both")
    if args.begin:
        if not args.owner:
            raise RetrainError("retrain run --begin needs --owner NAME (who holds the model's lease until --finish, e.g. the DAG run)")
        manifest, run_dir = begin_run(args.profile, owner=args.owner, home=args.home, as_of=args.as_of,
                                      run_id=args.run_id, lease_ttl=args.lease_ttl)
        print(json.dumps({"run_id": manifest.run_id, "run_dir": str(run_dir)}) if args.json else run_dir)
        return 0
    manifest = finish_run(args.finish, home=args.home)
    summary = _run_summary(manifest, Path(args.finish).resolve())
    print(json.dumps(summary, indent=2)) if args.json else _print_run(summary)
    return manifest.exit_code if manifest.exit_code is not None else EXIT_FAILED


def cmd_step(args) -> int:
    """Execute one step of a run begun with ``retrain run --begin``; 0 when the step succeeded."""
    from .pipeline import outcome_so_far, run_step

    _end_runs_on_signals()
    manifest, rec = run_step(args.run_dir, args.step, home=args.home)
    print(json.dumps({"run_id": manifest.run_id, "step": rec.name, "status": rec.status, "error": rec.error,
                      "outcome": outcome_so_far(manifest, Path(args.run_dir).resolve())}))
    return 0 if rec.status == "succeeded" else EXIT_FAILED


def cmd_lease(args) -> int:
    """Show the model's lease; ``--break`` removes it (its owner is gone and will not release it)."""
    from . import lease

    _, _, registry = _context(args)
    held = lease.read(registry)
    if args.break_:
        lease.release(registry, force=True)
        print(f"broke the lease of run {held['run_id']} (owner {held['owner']})" if held else "no lease to break")
        return 0
    print(json.dumps(held, indent=2) if held else f"model {registry.model_name} is not leased")
    return 0


def cmd_demo_data(args) -> int:
    from .demo import DEFAULT_FOLDERS, write_batches
    from .paths import Paths

    folder = Paths.discover(args.home).resolve(DEFAULT_FOLDERS[args.scenario])
    paths = write_batches(folder, weeks=args.weeks, seed=args.seed, scenario=args.scenario)
    scenario = "" if args.scenario == "default" else f" ({args.scenario} scenario)"
    print(f"wrote {len(paths)} weekly batches{scenario} to {folder}")
    return 0


def cmd_init(args) -> int:
    """Write params/<name>.yaml from a batch folder (every key commented), validated; print what it inferred."""
    from .profile_init import infer_profile, write_profile

    plan = infer_profile(args.data, label=args.label, name=args.name, time_column=args.time_column,
                         system_type=args.system_type, home=args.home)
    target = write_profile(plan, home=args.home, force=args.force)
    print(f"wrote {target} (validated)")
    for what, found in plan.summary():
        print(f"  {what}: {found}")
    shown = f"params/{plan.name}.yaml"
    print(f"next: retrain backtest --profile {shown}\n      retrain tune --profile {shown}\n      retrain run --profile {shown}")
    return 0


def cmd_tune(args) -> int:
    """Choose policy, thresholds and window on the older batches, confirm on the newest; write params/<name>.tuned.yaml."""
    from .tune import cell, tune, write_report

    result = tune(args.profile, home=args.home, confirm_share=args.confirm_share, tolerance=args.tolerance,
                  work_dir=args.work_dir, progress=not args.no_progress)
    files = write_report(result)
    if args.json:
        write_atomic(args.json, json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    cols = ["name", "tune_mean", "tune_retrains", "confirm_mean", "confirm_retrains"]
    rows = [{c: cell(r[c]) for c in cols} for r in result.table.to_dict("records")]
    print(f"tune of {result.profile}: chosen before {result.confirm_from}, confirmed from it on; {result.seconds:.0f} s")
    _print_table(rows, cols)
    print(f"pick: {result.pick_reason}")
    for name, ref in result.references.items():
        if ref:
            print(f"  confirm segment, {name}: mean {ref['confirm_mean']:.4f}, {ref['confirm_retrains']} retrain(s)")
    print("wrote " + ", ".join(str(p) for p in [result.tuned_profile, *files.values(), *([args.json] if args.json else [])]))
    return 0


def cmd_demo(args) -> int:
    """Generate the demo data and run the playbook twice: bootstrap, then after the drift."""
    import shutil
    import datetime as dt

    from .demo import DEMO_BATCHES, write_batches, week_end
    from .pipeline import run_playbook

    paths, prof, registry = _context(args)
    folder = paths.resolve(DEMO_BATCHES)
    if not any(folder.glob("*.parquet")):
        write_batches(folder, seed=args.seed)
        print(f"wrote the demo loan book to {folder}")
    if registry.path.exists():
        if not args.fresh:
            raise RetrainError(
                f"the demo registry {registry.path} already exists; run `retrain demo --fresh` to move it aside and start over"
            )
        aside = registry.path.with_name(f"{registry.path.name}.{dt.datetime.now():%Y%m%dT%H%M%S}.bak")
        shutil.move(str(registry.path), aside)
        print(f"moved the previous demo registry to {aside}")
    summaries = []
    for label, week in (("first run: bootstrap the champion", args.first_week), ("second run: after the drift", args.second_week)):
        print(f"\n== {label} (batches up to week {week}, {week_end(week)}) ==", flush=True)
        manifest, run_dir = run_playbook(args.profile, home=args.home, as_of=week_end(week).isoformat())
        summary = _run_summary(manifest, run_dir)
        _print_run(summary)
        summaries.append(summary)
        if manifest.status != "succeeded":
            return manifest.exit_code or EXIT_FAILED
    print(f"\nchampion of {prof.model_name}: {registry.champion()}  (see `retrain status`)")
    print("run folders:\n" + "\n".join(f"  {s['path']}" for s in summaries))
    return 0


def cmd_status(args) -> int:
    from .manifest import ManifestError, RunManifest

    paths, prof, registry = _context(args)
    champion, shown = _champion_shown(registry)
    shadow = registry.shadow_record()  # validation.shadow_batches: a version on trial beside the champion
    versions = [
        {"version": v.name, "created": v.metadata.get("created", ""), "run": v.metadata.get("run_id", ""),
         "rows": v.metadata.get("n_rows", ""), "size_mb": round(v.size_bytes / 2**20, 2),
         "role": "champion" if v.name == champion else "shadow" if shadow and v.name == shadow["version"] else ""}
        for v in registry.versions()
    ]
    runs = []
    for d in sorted(paths.runs.glob(f"*-{prof.name}*"), reverse=True)[: args.last]:
        if (d / "manifest.json").exists():
            try:
                m = RunManifest.load(d)
            except (OSError, ManifestError) as exc:  # one damaged record hides no other run
                print(f"retrain: warning: skipped {d / 'manifest.json'}: not a readable run record "
                      f"({type(exc).__name__}: {' '.join(str(exc).split())[:160]})", file=sys.stderr)
                continue
            runs.append({"run": m.run_id, "status": m.status, "outcome": m.outcome,
                         "champion_after": m.champion_after, "seconds": m.seconds})
    status = {"model": prof.model_name, "champion": champion, "versions": versions,
              "shadow": shadow and {"version": shadow["version"], "since": shadow["time"], "needed": shadow["needed"],
                                    "batches": len(registry.shadow_batches()), "reason": shadow["reason"]},
              "registry_mb": round(registry.total_size_bytes() / 2**20, 2), "runs": runs,
              "pointer_problem": registry.pointer_problem()}
    if prof.mlflow is not None:
        status["mlflow"] = _mlflow_links(paths.runs, prof.name)
        for r in runs:
            r["mlflow"] = status["mlflow"]["runs"].get(r["run"], "")
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"model {prof.model_name}: champion {shown}; registry {status['registry_mb']} MB")
    if status["shadow"]:
        s = status["shadow"]
        print(f"shadow {s['version']} on trial since {s['since'][:19]}: {s['batches']} of {s['needed']} batch(es) scored")
    if versions:
        _print_table(versions, ["version", "role", "created", "run", "rows", "size_mb"])
    print()
    _print_table(runs, ["run", "status", "outcome", "champion_after", "seconds"] + (["mlflow"] if prof.mlflow else []))
    if prof.mlflow is not None:
        links = status["mlflow"]
        print(f"\nmlflow {prof.mlflow.tracking_uri}: experiment {links['experiment_url'] or '(not mirrored yet)'}; "
              f"model {links['model_url'] or '(not mirrored yet)'} (alias champion -> version {links['champion'] or '-'})")
        if links["last"] and links["last"]["status"] != "mirrored":
            print(f"  last sync (run {links['last']['run']}) failed: {links['last']['error']}; the next run catches up")
    return 0


def _mlflow_links(runs_dir: Path, profile_name: str) -> dict:
    """The MLflow links the runs' manifests recorded (``mlflow`` of each), newest sync last."""
    from .manifest import ManifestError, RunManifest

    out = {"runs": {}, "experiment_url": None, "model_url": None, "champion": None, "last": None}
    for d in sorted(runs_dir.glob(f"*-{profile_name}*")):
        try:
            rec = RunManifest.load(d).mlflow if (d / "manifest.json").exists() else None
        except ManifestError:  # cmd_status has said so
            continue
        if not rec:
            continue
        out["last"] = {"run": d.name, "status": rec.status, "error": rec.error}
        if rec.mirrored:
            out["runs"].update({ours: theirs["url"] for ours, theirs in rec.runs.items()})
            out.update(experiment_url=rec.experiment_url, model_url=rec.model_url,
                       champion=(rec.champion or {}).get("mlflow_version"))
    return out


def cmd_history(args) -> int:
    _, _, registry = _context(args)
    rows = [e.to_dict() for e in registry.history()]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(rows, ["time", "event", "version", "previous", "run_id", "reason"])
    return 0


def cmd_rollback(args) -> int:
    """Roll back by hand as a run: notebook 40 with rollback=True, a run folder, outcome rolled-back, a notification."""
    from .pipeline import run_playbook

    from .manifest import OUTCOMES

    _, _, registry = _context(args)
    if args.to and registry.pointer_problem():  # a damaged pointer: no run can read it; repair it from the history
        ev = registry.roll_back(to=args.to, run_id=None, reason=args.reason)
        print(f"repaired the CHAMPION pointer: champion {ev.version} (history.jsonl said {ev.previous or 'none'})")
        return OUTCOMES["rolled-back"]
    registry.rollback_target(args.to)  # bad input is refused before a run folder is written
    _end_runs_on_signals()
    manifest, run_dir = run_playbook(args.profile, home=args.home, rollback=True, rollback_to=args.to,
                                     rollback_reason=args.reason, lock_timeout=args.wait)
    _print_run(_run_summary(manifest, run_dir))
    rec = manifest.mlflow  # the runner moved MLflow's champion alias too (profile mlflow:)
    if rec:
        print(f"mlflow: alias champion -> version {rec.champion['mlflow_version']} ({rec.model_url})"
              if rec.mirrored and rec.champion else f"mlflow: not updated ({rec.error}); the next run catches up")
    return manifest.exit_code if manifest.exit_code is not None else EXIT_FAILED


def cmd_mlflow_sync(args) -> int:
    """Mirror into MLflow what it misses now (runs, versions, alias ``champion``); exit 0 once in sync."""
    paths, prof, registry = _context(args)
    if prof.mlflow is None:
        raise ProfileError(f"{args.profile}: no mlflow: section, so nothing is mirrored; add mlflow.tracking_uri "
                           "(docs/guides/mlflow.md) to mirror this profile's runs and versions")
    try:
        from . import mlflow_mirror
    except ImportError as exc:
        print(f"retrain: error: {exc}: install the optional extra: pip install -r requirements-mlflow.txt", file=sys.stderr)
        return EXIT_FAILED
    if not args.verbose:  # the mirror's own log line speaks of runs and manifests; this command prints its own
        logging.getLogger(mlflow_mirror.log.name).setLevel(logging.ERROR)
    rec = mlflow_mirror.sync(prof.mlflow, runs_dir=paths.runs, registry=registry, profile_name=prof.name,
                             model_name=prof.model_name)
    if args.json:
        print(json.dumps(rec, indent=2, default=str))
    if rec["status"] != "mirrored":
        print(f"retrain: error: mlflow {prof.mlflow.tracking_uri}: could not mirror: {one_line(rec['error'])}; "
              "nothing changed here, run it again when the server answers", file=sys.stderr)
        return EXIT_FAILED
    if not args.json:
        champ = rec["champion"]
        before, after = champ.get("mlflow_version_before"), champ.get("mlflow_version")
        alias = (f"alias {mlflow_mirror.ALIAS} -> version {after} ({champ['version']})" if after
                 else f"alias {mlflow_mirror.ALIAS}: none (no champion)")
        if before != after:
            alias += f", moved from version {before or '(none)'}"
        what = (f"mirrored {len(rec['runs'])} run(s) and {len(rec['versions'])} version(s)"
                if rec["runs"] or rec["versions"] or before != after else "already in sync")
        print(f"mlflow {prof.mlflow.tracking_uri}: {what}; {alias}; {rec['model_url']}")
    return 0


def _file(path: str, option: str) -> Path:
    """A --reference/--current file, checked as data.read_frame checks it (exists, format, readable, unique names)."""
    from .data import check_file

    check_file(path, what=f"{option} file")
    return Path(path)


def cmd_drift(args) -> int:
    """Drift between two files: the ranked table and the dataset verdict; exit 0 either way."""
    from . import data
    from .drift import compare_files
    from .profiles import DriftSettings

    ref_arg, cur_arg = _drift_files(args)
    ref_path, cur_path = _file(ref_arg, "--reference"), _file(cur_arg, "--current")
    settings, threshold, skip = DriftSettings(), 0.1, set()
    if args.profile:
        from .paths import Paths
        from .profiles import load_profile

        prof = load_profile(Paths.discover(args.home).profile(args.profile))
        settings, threshold = prof.drift, prof.drift_threshold
        skip = {prof.data.label, prof.data.time_column, prof.data.key, *prof.data.ignore_columns}
    columns = [c for c in data.column_names(ref_path) if c not in skip]  # only the compared columns are read
    report = compare_files(ref_path, cur_path, columns=columns, settings=settings, drift_threshold=threshold,
                           min_rows=MIN_DRIFT_ROWS, what=("--reference file", "--current file"))
    table = report.to_frame()
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_columns", 12, "display.max_rows", 200):
        print(table.to_string(index=False))
    verdict = "DRIFTED" if report.drifted else "no dataset drift"
    print(f"\n{verdict}: drift score {report.score:.3f} (share of drifted features) vs drift_threshold {threshold:g}")
    if report.multivariate is not None:
        print(f"multivariate: {report.multivariate.to_dict()}")
    if args.json:
        write_atomic(args.json, json.dumps(report.to_dict(), indent=2, default=str) + "\n")
        print(f"full result: {args.json}")
    return 0


def _drift_files(args) -> tuple[str, str]:
    """The two files of `retrain drift`: positional (REFERENCE CURRENT) or --reference/--current, not both."""
    given = {"reference": (args.reference_file, args.reference), "current": (args.current_file, args.current)}
    chosen = []
    for name, (positional, option) in given.items():
        if positional and option and positional != option:
            raise RetrainError(f"retrain drift got two {name} files ({positional} and --{name} {option}); give one")
        if not (positional or option):
            raise RetrainError(f"retrain drift needs a {name} file: retrain drift REFERENCE CURRENT "
                               "(Parquet or CSV; or --reference/--current)")
        chosen.append(positional or option)
    return chosen[0], chosen[1]


def cmd_backtest(args) -> int:
    """Replay the profile's batches once per strategy and print the comparison table."""
    from .backtest import run_backtest

    result = run_backtest(
        args.profile, home=args.home, strategies=args.strategies, work_dir=args.work_dir, warmup=args.warmup,
        max_batches=args.max_batches, period_days=args.period_days,
        period_batches=args.period_batches, fit_cache=not args.no_fit_cache,
        progress=not args.no_progress, label_delay=args.label_delay, cold=args.cold, partial=args.no_summary,
    )
    if args.no_summary:
        print(f"replayed {', '.join(s.name for s in result.strategies)} of {result.profile} into {result.work_dir} "
              f"in {result.seconds:.0f} s; merge with `retrain backtest-merge {result.work_dir}`")
        return 0
    return _report_backtest(result, args)


def cmd_backtest_merge(args) -> int:
    """Merge strategies replayed by separate `retrain backtest --no-summary` workers; print the table."""
    from .backtest import merge_backtest

    return _report_backtest(merge_backtest(args.work_dir), args)


def _report_backtest(result, args) -> int:
    """Write the backtest's files and print its table (`retrain backtest` and `backtest-merge` alike)."""
    from .backtest import check_target

    files = result.write(args.out)
    payload = result.to_dict()
    if args.json:
        text = json.dumps(payload, indent=2, default=str) + "\n"
        if args.json == "-":
            sys.stdout.write(text)
            return 0
        write_atomic(args.json, text)
    table = result.summary.reset_index()
    columns = [c for c in ("strategy", "mean", "worst", "mean_after_drift", "retrains", "promotions", "cpu_seconds",
                           "mean_ratio", "worst_ratio", "retrains_ratio", "promotions_ratio", "cpu_seconds_ratio",
                           "gap_closed", "refit_ratio", "harmful_promotions", "mean_regret", "estimate_coverage",
                           "estimates_judged")
               if c in table]
    rows = [{c: (f"{r[c]:.4f}" if isinstance(r[c], float) and c != "cpu_seconds" else
                 f"{r[c]:.1f}" if c == "cpu_seconds" else r[c]) for c in columns} for r in table.to_dict("records")]
    print(f"backtest of {result.profile}: {result.metric} per batch, {result.settings['n_batches']} batches, "
          f"first champion at batch {result.settings['warmup']}; {result.seconds:.0f} s")
    _print_table(rows, columns)
    cache = result.fit_cache
    if cache.get("enabled", True):
        print(f"shared fits: {cache['fits_computed']} computed, {cache['fits_reused']} reused "
              f"(saved {cache['cpu_seconds_saved']:.1f} training CPU-seconds)")
    target = check_target(result.summary) if "every-batch" in result.summary.index else None
    if target is not None and len(target):
        print("target (>= 95% of every-batch's mean with <= 1/3 of its retrains, beating static after drift):")
        for name, r in target.iterrows():
            print(f"  {name}: {'met' if r['meets_target'] else 'not met'} "
                  f"(mean ratio {r['mean_ratio']:.3f}, retrains ratio {r['retrains_ratio']:.3f})")
    acceptance = result.acceptance()
    if len(acceptance):
        print("acceptance (against static and the plain refit reference):")
        for r in acceptance.to_dict("records"):
            value = f"{r['value']:.3f}" if isinstance(r["value"], float) else r["value"]
            print(f"  {'ok  ' if r['ok'] else 'MISS'} {r['check']}: {value} (limit {r['limit']})")
    print("wrote " + ", ".join(str(p) for p in files.values()) + (f", {args.json}" if args.json else ""))
    return 0


def cmd_schedule(args) -> int:
    from .profiles import ScheduleSettings
    from .scheduler import Scheduler

    schedule = _schedule_option(args)
    return Scheduler(args.profile, home=args.home, schedule=schedule, lock_wait=args.wait, max_runs=args.max_runs,
                     report=not args.no_report).serve()


def _schedule_option(args):
    """--cron / --every-minutes as schedule settings; their errors blame the option, not the profile."""
    from .errors import ProfileError
    from .profiles import ScheduleSettings
    from .scheduler import make_trigger

    if args.cron is None and args.every_minutes is None:
        return None
    if args.cron is not None and args.every_minutes is not None:
        raise ProfileError("give either --cron or --every-minutes, not both")
    if args.every_minutes is not None and not args.every_minutes > 0:
        raise ProfileError(f"--every-minutes {args.every_minutes:g} must be above 0, e.g. --every-minutes 60")
    schedule = ScheduleSettings(cron=args.cron, every_minutes=args.every_minutes)
    try:
        make_trigger(schedule)
    except ProfileError as exc:
        cause = str(exc.__cause__ or exc)
        raise ProfileError(f"--cron {args.cron!r} is not a crontab expression ({cause}); expected five fields: minute "
                           "hour day-of-month month day-of-week in UTC, e.g. --cron '0 6 * * *'") from None
    return schedule


def cmd_report(args) -> int:
    from .manifest import mark_abandoned
    from .paths import Paths
    from .report import build_report

    mark_abandoned(Paths.discover(args.home).runs, by="retrain report")
    result = build_report(Paths.discover(args.home).runs, force=args.force)
    print(f"{result.runs} runs listed, {result.rendered} notebooks rendered ({result.skipped} already), "
          f"in {result.seconds:.1f} s: {result.index}")
    return 0


def cmd_replay(args) -> int:
    """Replay a run folder; 0 when everything matches, 1 with a one-line reason when something differs."""
    from .replay import replay

    _recover_for_replay(Path(args.run_dir))
    report = replay(args.run_dir, tolerance=args.tolerance, keep_scratch=args.keep_scratch)
    if args.json == "-":
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print(report.to_text())
        if args.json:
            write_atomic(args.json, json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    if report.matched:
        return 0
    print(f"retrain: replay differs: {report.reason()}", file=sys.stderr)
    return EXIT_FAILED


def _recover_for_replay(run_dir: Path) -> None:
    """Before a replay reads the live registry and the runs: the same recovery as every other command."""
    from .manifest import ManifestError, RunManifest
    from .paths import Paths
    from .registry import Registry

    try:
        profile = RunManifest.load(run_dir).profile
    except (OSError, ManifestError):
        return  # replay itself says what is wrong with the record
    if not profile.model_name:
        return
    paths = Paths(run_dir.resolve().parent.parent)
    _recover_before_reading(paths.runs, Registry(paths.resolve(profile.registry), profile.model_name), by="retrain replay")


def build_parser() -> argparse.ArgumentParser:
    """``retrain``'s parser: one subcommand per command, added by group (one small function each)."""
    p = argparse.ArgumentParser(prog="retrain", description="Keep AutoGluon tabular models accurate: drift, retrain, validate, promote, roll back.")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    add = _subcommands(p.add_subparsers(dest="command", required=True))
    for group in (_run_commands, _setup_commands, _model_commands, _backtest_commands):
        group(add)
    return p


def _subcommands(sub):
    """``add(name, func, help)``: a subcommand running ``func``, with ``--home`` and (``profile``) ``--profile``."""

    def add(name: str, func, help: str, profile: bool = True, home: bool = True, description: str | None = None):
        sp = sub.add_parser(name, help=help, description=description or help)
        sp.set_defaults(func=func)
        if home:
            sp.add_argument("--home", default=None, help="project home (default: $RETRAIN_HOME or the folder above with params/)")
        if profile:
            sp.add_argument("--profile", "-p", default=DEFAULT_PROFILE, help=f"profile YAML (default {DEFAULT_PROFILE})")
        return sp

    return add


def _run_commands(add) -> None:
    """run, and a run step by step (step, lease)."""
    sp = add("run", cmd_run, "run the playbook once (the four notebooks) and write runs/<run-id>/")
    sp.add_argument("--as-of", default=None, help="only use batches up to this date (YYYY-MM-DD)")
    sp.add_argument("--wait", type=float, default=0, help="seconds to wait for another run of this model to finish (default 0: skip at once)")
    sp.add_argument("--json", action="store_true", help="print the summary as JSON")
    sp.add_argument("--begin", action="store_true",
                    help="only lease the model to --owner and create the run folder (print it); then `retrain step` "
                         "runs each step and `retrain run --finish` closes it (how an orchestrator such as Airflow runs it)")
    sp.add_argument("--owner", default=None, help="with --begin: who holds the lease, e.g. the DAG run; the same owner gets its run back")
    sp.add_argument("--run-id", default=None, help="with --begin: the run folder's name (default <UTC timestamp>-<profile>)")
    sp.add_argument("--lease-ttl", type=float, default=3600.0,
                    help="with --begin: seconds the lease lives unless a step renews it (default 3600)")
    sp.add_argument("--finish", default=None, metavar="RUN_DIR",
                    help="close a run begun with --begin: outcome, notifications, release the lease; exit code as a run's")

    sp = add("step", cmd_step, "execute one step of a run begun with `retrain run --begin` (exit 0: the step succeeded)",
             profile=False)
    sp.add_argument("--run-dir", required=True, help="the run folder `retrain run --begin` printed")
    sp.add_argument("--step", required=True, help="10, 20, 30, 40 or the notebook's name, e.g. 20-retrain-model")

    sp = add("lease", cmd_lease, "show the model's run lease (held by a run executed step by step)")
    sp.add_argument("--break", dest="break_", action="store_true", help="remove the lease whoever holds it")


def _setup_commands(add) -> None:
    """demo, demo-data, init, tune: data, profiles and their thresholds."""
    sp = add("demo", cmd_demo, "write the demo data and run the playbook twice (bootstrap, then after the drift)")
    sp.add_argument("--fresh", action="store_true", help="move an existing demo registry aside first")
    sp.add_argument("--seed", type=int, default=42)
    sp.add_argument("--first-week", type=int, default=10)
    sp.add_argument("--second-week", type=int, default=22)

    sp = add("demo-data", cmd_demo_data, "write the demo loan book as weekly Parquet batches", profile=False)
    sp.add_argument("--weeks", type=int, default=30)
    sp.add_argument("--seed", type=int, default=42)
    sp.add_argument("--scenario", choices=("default", "covariate-shift"), default="default",
                    help="default: downturn then concept change (data/demo/batches); covariate-shift: a growing "
                         "segment the champion scores badly, nothing else (data/demo-covariate-shift/batches)")

    sp = add("init", cmd_init, "write a commented profile params/<name>.yaml from a folder of batch files", profile=False)
    sp.add_argument("--data", required=True, help="the folder of batch files (one Parquet or CSV file per period)")
    sp.add_argument("--label", required=True, help="the target column")
    sp.add_argument("--name", default=None, help="profile and model name (default: the folder's name)")
    sp.add_argument("--time-column", default=None, help="the column that orders rows (default: found among date columns)")
    from .profiles import GUIDE_ROWS

    sp.add_argument("--system-type", default="standard-business", choices=GUIDE_ROWS,
                    help="the guide's row of thresholds (default standard-business)")
    sp.add_argument("--force", action="store_true", help="replace an existing params/<name>.yaml")

    sp = add("tune", cmd_tune, "choose the policy, thresholds and window on the older batches, confirm them on the "
             "newest, and write params/<name>.tuned.yaml")
    sp.add_argument("--json", default=None, metavar="OUT", help="also write the candidates, the pick and why as JSON to OUT")
    sp.add_argument("--confirm-share", type=float, default=0.4, help="newest share of the scored batches kept to confirm "
                    "(never read while choosing; at least 3 batches; default 0.4)")
    sp.add_argument("--tolerance", type=float, default=0.01, help="a candidate within this of the best tune mean may be "
                    "picked when it retrains less (default 0.01)")
    sp.add_argument("--work-dir", default=None, help="scratch homes and shared fits (default runs/<UTC timestamp>-<profile>-tune)")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")


def _model_commands(add) -> None:
    """status, history, drift, schedule, report, rollback, mlflow-sync: a model and its runs."""
    sp = add("status", cmd_status, "show the champion, each version's size and the last runs")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--last", type=int, default=10, help="how many runs to list")

    sp = add("history", cmd_history, "print the registry's promotions and rollbacks")
    sp.add_argument("--json", action="store_true")

    sp = add("drift", cmd_drift, "compare two data files: per-feature drift table and the dataset verdict (exit 0 either way)", profile=False)
    sp.add_argument("reference_file", nargs="?", metavar="REFERENCE", help="reference data (Parquet or CSV)")
    sp.add_argument("current_file", nargs="?", metavar="CURRENT", help="current data (Parquet or CSV)")
    sp.add_argument("--reference", default=None, help="reference data, as an option (instead of REFERENCE)")
    sp.add_argument("--current", default=None, help="current data, as an option (instead of CURRENT)")
    sp.add_argument("--profile", "-p", default=None, help="take drift settings and threshold from this profile")
    sp.add_argument("--json", default=None, metavar="OUT", help="write the full result as JSON here")

    sp = add("schedule", cmd_schedule, "run the playbook on the profile's schedule in the foreground (Ctrl-C or SIGTERM stops it)")
    sp.add_argument("--cron", default=None, help="override the profile's schedule with a crontab expression (UTC), e.g. '0 6 * * *'")
    sp.add_argument("--every-minutes", type=float, default=None, help="override the profile's schedule with an interval")
    sp.add_argument("--wait", type=float, default=0, help="seconds to wait for another run of this model before skipping a turn")
    sp.add_argument("--max-runs", type=int, default=None, help="stop after this many runs (default: until stopped)")
    sp.add_argument("--no-report", action="store_true", help="do not refresh runs/index.html after each run")

    sp = add("report", cmd_report, "render executed notebooks to HTML and write runs/index.html", profile=False)
    sp.add_argument("--force", action="store_true", help="render every notebook again")

    sp = add("rollback", cmd_rollback, "make the previous champion (or --to VERSION) champion again")
    sp.add_argument("--to", default=None, help="version to roll back to, e.g. v0002")
    sp.add_argument("--reason", default="manual rollback (retrain rollback)")
    sp.add_argument("--wait", type=float, default=0, help="seconds to wait for a running run of this model")
    sp = add("mlflow-sync", cmd_mlflow_sync, "mirror into MLflow (the profile's mlflow: section) what it misses "
             "now: runs, versions, alias champion; idempotent, exit 0 once in sync, 1 when the server cannot be reached")
    sp.add_argument("--json", action="store_true", help="print the mirror's record as JSON")


def _backtest_commands(add) -> None:
    """backtest, backtest-merge, replay: the past replayed."""
    sp = add("backtest", cmd_backtest, "replay history once per retraining strategy (walk-forward) and compare them")
    sp.add_argument("--strategies", default="all",
                    help="comma-separated: static, periodic, drift, performance, hybrid, every-batch, shadow, refit (default all)")
    sp.add_argument("--json", default=None, metavar="OUT", help="also write the result (table and per-batch records) as JSON to OUT ('-': stdout)")
    sp.add_argument("--out", default=None, help="folder for backtest.json/.csv/.png (default: the work dir)")
    sp.add_argument("--work-dir", default=None, help="scratch homes per strategy (default runs/<UTC timestamp>-<profile>-backtest)")
    sp.add_argument("--warmup", type=int, default=None, help="batches visible when the first champion is trained (default holdout+window)")
    sp.add_argument("--max-batches", type=int, default=None, help="replay only the oldest N batches")
    sp.add_argument("--period-days", type=float, default=None, help="the periodic strategy's interval (default retraining_interval)")
    sp.add_argument("--period-batches", type=int, default=None, help="instead, the periodic strategy retrains every N batches")
    sp.add_argument("--no-fit-cache", action="store_true", help="compute every fit instead of sharing identical ones")
    sp.add_argument("--label-delay", type=int, default=None, metavar="N",
                    help="every strategy sees labels N batches late (data.label_delay_batches; default the profile's)")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    sp.add_argument("--cold", action="store_true", help="fresh-process checks in a new interpreter each and no check cache "
                    "(the slower behaviour before the warm fork server)")
    sp.add_argument("--no-summary", action="store_true",
                    help="replay only, keeping each strategy's records in --work-dir for `retrain backtest-merge` "
                         "(one worker's share of a backtest spread over workers; the fit cache there is shared)")
    sp = add("backtest-merge", cmd_backtest_merge, "merge strategies replayed by `retrain backtest --no-summary` "
             "into one work dir and print the table `retrain backtest` prints", profile=False)
    sp.add_argument("work_dir", metavar="WORK_DIR", help="the shared --work-dir of the replays")
    sp.add_argument("--json", default=None, metavar="OUT", help="also write the result as JSON to OUT ('-': stdout)")
    sp.add_argument("--out", default=None, help="folder for backtest.json/.csv/.png (default: the work dir)")
    sp = add("replay", cmd_replay, "re-execute a run folder from its record and compare its decisions", profile=False,
             home=False, description="re-execute a run folder from its record (profile as run, registry as it stood, same "
                                     "as_of) into a new runs/<id>-replay folder and compare decisions, gate verdicts, "
                                     "metrics and the challenger's held-out predictions. Exit 0: everything matches; "
                                     "1: something differs (one line says what); 2: refused (an input changed or is missing)")
    sp.add_argument("run_dir", metavar="RUN_DIR", help="the run folder to replay, e.g. runs/20240602T060000Z-demo")
    sp.add_argument("--json", default=None, metavar="OUT", help="also write the comparison as JSON to OUT ('-': stdout only)")
    sp.add_argument("--tolerance", type=float, default=1e-6, help="absolute tolerance for metrics (default 1e-6)")
    sp.add_argument("--keep-scratch", action="store_true", help="keep the scratch registry (runs/.replay-<id>/) for inspection")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not args.verbose:  # papermill logs every notebook's paths at INFO; our runner logs one line per step
        logging.getLogger("papermill").setLevel(logging.WARNING)
    try:
        return int(args.func(args))
    except RunLocked as exc:
        print(f"retrain: skipped: {one_line(exc)}", file=sys.stderr)
        return int(exc.exit_code)
    except RetrainError as exc:
        print(f"retrain: error: {one_line(exc)}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("retrain: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except Terminated:
        print("retrain: stopped by SIGTERM; the run's manifest records it as failed", file=sys.stderr)
        return int(ExitCode.TERMINATED)
    except Exception as exc:  # not ours: still one line (the traceback with -v), never a wall of text
        if args.verbose:
            raise
        print(f"retrain: error: unexpected {type(exc).__name__}: {one_line(exc)} (run with -v for the traceback)",
              file=sys.stderr)
        return int(ExitCode.FAILED)


def one_line(exc: BaseException) -> str:
    """An error's message on one line (YAML and library messages span several)."""
    return " ".join(str(exc).split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
