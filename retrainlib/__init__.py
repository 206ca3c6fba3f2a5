"""retrainlib: keep AutoGluon tabular models accurate after they ship."""

from .errors import RetrainError
from .profiles import Profile, load_profile

__all__ = ["RetrainError", "Profile", "load_profile"]
__version__ = "0.1.0"
