"""What the warm fork server does once, before it forks any check or fit (:mod:`retrainlib.freshproc`).

Importing this module loads AutoGluon's predictor class and takes AutoGluon's listing of installed
packages (:func:`retrainlib.automl.remember_package_listing`), so each forked child starts with both.
"""

from . import automl

automl.remember_package_listing()
