"""All paths from one place.

The project home holds ``params/``, ``data/``, ``models/`` and ``runs/``. It is ``$RETRAIN_HOME``
when set, else the nearest ancestor of the working directory that has a ``params/`` folder, else
the working directory. Notebooks and the CLI never build these paths themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Paths", "project_home", "NOTEBOOKS", "PACKAGE_ROOT"]

PACKAGE_ROOT = Path(__file__).resolve().parent
#: the notebooks shipped with the source tree (the repository's ``notebooks/``)
NOTEBOOKS = PACKAGE_ROOT.parent / "notebooks"


def project_home(start: str | os.PathLike | None = None) -> Path:
    """Return the project home (see module docstring)."""
    env = os.environ.get("RETRAIN_HOME")
    if env:
        return Path(env).expanduser().resolve()
    here = Path(start or os.getcwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "params").is_dir():
            return candidate
    return here


@dataclass(frozen=True)
class Paths:
    """The folders of one project home."""

    home: Path

    @classmethod
    def discover(cls, home: str | os.PathLike | None = None) -> "Paths":
        return cls(Path(home).resolve() if home else project_home())

    @property
    def params(self) -> Path:
        return self.home / "params"

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    @property
    def models(self) -> Path:
        return self.home / "models"

    @property
    def data(self) -> Path:
        return self.home / "data"

    def profile(self, path: str | os.PathLike) -> Path:
        """A profile path as a user gives it: absolute, else under the home, else from the working directory."""
        p = Path(path).expanduser()
        if p.is_absolute():
            return p
        return self.home / p if (self.home / p).exists() or not p.exists() else p.resolve()

    def resolve(self, path: str | os.PathLike) -> Path:
        """A path from a profile: absolute as given, relative to the project home otherwise."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.home / p)
