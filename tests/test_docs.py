"""The docs cannot drift from the code: README is a front door whose links resolve, and the reference pages
are generated from argparse and the pydantic models (``make docs`` builds the site with ``mkdocs build --strict``,
which fails on a broken link, a missing anchor or a page left out of the nav)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]


def test_the_readme_is_a_front_door_of_at_most_300_lines_with_the_two_commands_first():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 300, len(lines)
    first_block = "\n".join(lines[:6])
    assert "make demo" in first_block and "make test" in first_block


def test_every_relative_link_of_the_readme_and_the_docs_pages_resolves_to_a_file():
    pages = [REPO / "README.md", REPO / "ARCHITECTURE.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").rglob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, broken


def test_every_page_the_site_nav_lists_exists_and_every_guide_is_in_the_nav():
    nav = yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"]

    def files(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            for v in node.values():
                yield from files(v)
        elif isinstance(node, list):
            for v in node:
                yield from files(v)

    listed = set(files(nav))
    generated = {"reference/cli.md", "reference/profiles.md"}  # written by `python -m retrainlib.docgen` first
    assert not [f for f in listed - generated if not (REPO / "docs" / f).exists()]
    guides = {f"guides/{p.name}" for p in (REPO / "docs" / "guides").glob("*.md")}
    assert guides <= listed, guides - listed


def test_the_generated_cli_reference_names_every_command_and_flag_argparse_knows():
    from retrainlib.cli import build_parser
    from retrainlib.docgen import cli_reference

    text = cli_reference()
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    missing = []
    for name, command in sub.choices.items():
        section = text.split(f"## `retrain {name}`", 1)
        if len(section) < 2:
            missing.append(name)
            continue
        body = section[1].split("\n## ", 1)[0]
        for action in command._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help") and f"`{flag}`" not in body:
                    missing.append(f"{name} {flag}")
    assert not missing, missing


def test_the_generated_profile_reference_names_every_key_of_every_section():
    from pydantic import BaseModel

    from retrainlib.docgen import profile_reference
    from retrainlib.profiles import Profile

    text = profile_reference()

    def keys(model, prefix=""):
        for name, field in model.model_fields.items():
            key = f"{prefix}{name}"
            yield key
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                yield from keys(field.annotation, f"{key}.")

    missing = [k for k in keys(Profile) if f"`{k}`" not in text]
    assert not missing, missing


def _benchmark(name: str):
    import importlib.util
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))  # the scripts import their neighbours by name
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_seed_table_divides_our_point_error_by_nannymls_per_seed_past_the_warm_up_and_counts_the_seeds_no_worse(
        tmp_path):
    seeds = _benchmark("estimate_seeds")
    for seed, ours in ((0, 0.70), (1, 0.74)):  # NannyML errs 0.02 on each judged batch; ours 0.00 / 0.04 or 0.00
        rows = [{"stream": "s", "batch": f"b{i}", "metric": "accuracy", "realized": 0.72, "ours": ours if i % 2 else 0.72,
                 "ours_low": 0.6, "ours_high": 0.8 if i % 2 or seed == 0 else 0.71, "judged_before": i,
                 "unreliable": "", "track_record": 0.0, "nannyml": 0.70, "nannyml_low": 0.6, "nannyml_high": 0.8}
                for i in range(7)]
        (tmp_path / str(seed)).mkdir()
        pd.DataFrame(rows).to_csv(tmp_path / str(seed) / seeds.CSV, index=False)
    table = seeds.seed_table({0: tmp_path / "0", 1: tmp_path / "1"}).iloc[0]
    # past the warm-up (judged_before >= 3): batches 3-6; ours errs 0.02 on 3 and 5, 0 on 4 and 6: half NannyML's
    assert table["seed 0: error / NannyML's"] == 0.5 and table["seed 1: error / NannyML's"] == 0.5
    assert table["seed 0: coverage"] == 1.0 and table["seed 1: coverage"] == 0.5  # seed 1's bands miss 0.72 on 4, 6
    assert table["seeds no worse than NannyML"] == "2 of 2" and table["coverage, range"] == "0.500–1.000"


def test_the_estimate_bench_times_the_two_sides_taking_turns_and_keeps_each_sides_fastest_run():
    import time

    bench = _benchmark("bench_estimate")
    turns, nannyml_times = [], iter([(3.0, 2.9), (2.0, 2.1), (2.5, 1.8)])

    def ours():  # an untimed run before each timed one: the 1st, 3rd and 5th; the 6th is the fastest
        turns.append("ours")
        time.sleep(0.0 if turns.count("ours") == 6 else 0.15)
        return len(turns)

    def nannyml_once():
        turns.append("nannyml")
        seconds, cpu = next(nannyml_times)
        return {"nannyml": "0.13.1", "seconds": seconds, "cpu_seconds": cpu, "rows": [{"batch": len(turns)}]}

    result, seconds, cpu, nm = bench.interleaved(ours, nannyml_once, 3)
    assert turns == ["ours", "ours", "nannyml"] * 3
    assert result == 8 and nm["rows"] == [{"batch": 9}]  # each side's last output
    assert seconds < 0.1 and cpu < 0.1 and (nm["seconds"], nm["cpu_seconds"]) == (2.0, 1.8)  # fastest wall, CPU


def test_comparing_a_backtest_with_itself_shows_no_change_and_a_moved_estimate_shows_before_and_after(tmp_path):
    import json

    compare = _benchmark("compare_backtests")
    record = REPO / "docs" / "backtest-demo.json"
    same = compare.compare(record, record)
    assert not same.apply(lambda col: col.str.contains("→")).any().any()
    raw = json.loads(record.read_text())
    moved = next(r for r in raw["records"] if r["strategy"] == "static" and r.get("estimated") is not None)
    moved["estimated"] += 0.23  # one estimate of the static strategy further from the truth
    (tmp_path / "after.json").write_text(json.dumps(raw))
    table = compare.compare(record, tmp_path / "after.json")
    before, after = table.loc["static", "estimate abs error, all"].split(" → ")
    assert float(after) > float(before) and table.loc["static", "mean"].count("→") == 0
    assert not table.drop(index="static").apply(lambda col: col.str.contains("→")).any().any()


def test_the_tune_tables_of_the_readme_and_the_docs_are_what_the_command_generates_from_the_committed_json():
    tune_summary = _benchmark("tune_summary")
    results = sorted((REPO / "docs" / "tune").glob("*.json"))
    assert results
    readme = (REPO / "README.md").read_text()
    assert tune_summary.readme_block(results) in readme, "README's tune table is stale: run benchmarks/tune_summary.py --readme"
    assert (REPO / "docs" / "tune" / "index.md").read_text() == tune_summary.page(results) + "\n"


def test_the_shadow_table_of_the_readme_is_what_the_command_generates_from_the_committed_backtests():
    shadow_report = _benchmark("shadow_report")
    results = [str(p) for p in sorted((REPO / "docs" / "shadow").glob("*.json"))]
    assert results
    readme = (REPO / "README.md").read_text()
    assert shadow_report.readme_block(results) in readme, "README's shadow table is stale: run benchmarks/shadow_report.py --readme"
    page = (REPO / "docs" / "backtest-shadow.md").read_text()
    assert shadow_report.summary(results) in page, "docs/backtest-shadow.md's table is stale: run benchmarks/shadow_report.py"


def test_the_readmes_estimate_table_is_the_running_mode_table_of_the_benchmarks_page():
    readme = (REPO / "README.md").read_text()
    start, end = "<!-- estimate-table:", "<!-- /estimate-table -->"
    assert start in readme and end in readme, "README lacks its estimate-table markers"
    block = readme.split(start, 1)[1].split(end, 1)[0].split("\n", 1)[1].strip()
    assert block.startswith("| stream | metric | delay |") and block.count("\n") >= 10, block[:200]
    assert block in (REPO / "benchmarks" / "README.md").read_text(), \
        "README's estimate table differs from benchmarks/README.md's running-mode table: copy it again"


def test_the_results_page_is_what_the_command_generates_from_the_committed_backtests():
    streams_summary = _benchmark("streams_summary")
    written = sorted((REPO / "docs").glob("backtest-*.json"))
    page = (REPO / "docs" / "results.md").read_text()
    assert page == streams_summary.page(written) + "\n", "docs/results.md is stale: run benchmarks/streams_summary.py"
