"""Lint an mmcv config before training: what ``aqr inspect-checkpoint CONFIG.py`` computes.

:func:`lint_config` reads a config with the never-executing reader (``_base_`` files merged as
mmcv does), extracts the AQR settings, traces where each one comes from (this file and line, a
``_base_`` file and line, or a ``CmtHead`` default), says whether AQR ends up on, off or
half-configured after the merge (:mod:`.status`), checks the AQR shapes against the maps the
rest of the detector implies (:mod:`.detector`), and runs every quirk rule of
:mod:`aqr_cli.analysis.findings` registered for ``'config'``. Rules that need a checkpoint, a
camera rig or a debug dump are not run; :data:`NOT_RUN` lists them with what they need. The
result is a :class:`ConfigLintReport`; its ``findings`` are the same :class:`Finding` objects
(ids, severities, JSON) as for checkpoints. :func:`looks_like_config` (:mod:`.detect`) tells a
config from a checkpoint by content; :func:`diff_configs` (:mod:`.diff`) lists the settings
several configs disagree on.

The config alone cannot say which code generation will run it. The lint assumes the HEAD code,
where an enabled head takes the attention-bias path (the renderer and modulator are built but
unused), as the checkpoint lint does when it finds a bias generator.

This module is the package's public interface.
"""

from aqr_cli.analysis.config_lint.detect import looks_like_config
from aqr_cli.analysis.config_lint.diff import ConfigDiff, SettingDiff, diff_configs
from aqr_cli.analysis.config_lint.lint import (
    CONFIG_RULE_IDS,
    NOT_RUN,
    ConfigLintReport,
    lint_config,
    not_run,
)

__all__ = [
    "CONFIG_RULE_IDS", "NOT_RUN", "ConfigDiff", "ConfigLintReport", "SettingDiff", "diff_configs",
    "lint_config", "looks_like_config", "not_run",
]
