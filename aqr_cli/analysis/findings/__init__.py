"""The quirk lint: which upstream bugs (spec section 9) a checkpoint, config or debug dump shows.

Each rule decides one quirk from what ``aqr inspect-checkpoint`` has: the checkpoint's tensors,
its config (``meta['config']``, ``--config`` or a config file linted alone), a camera rig, or a
debug dump; ``inspect-log`` runs the checkpoint rules on a log's printed config. A rule returns
a :class:`Finding` (id, severity, one message: what was seen, then its consequence) or nothing.
Rules are registered with :func:`~aqr_cli.analysis.findings.registry.quirk_rule` next to their
code (id, inputs it applies to, what decides it, when it fires), grouped by concept:
:mod:`.geometry_rules`, :mod:`.bias_rules`, :mod:`.head_rules`, :mod:`.training_rules` (on a
:class:`CheckpointContext`) and :mod:`.dump_rules`. Quirks that need anything else (training
logs, source code, the images) are listed in :data:`NOT_CHECKED` with the reason. The README's
quirk table is generated from :data:`RULES` (:func:`readme_table`; ``tests/test_inspect.py``
fails when they disagree).

Severities: ``error`` = the run cannot have done what its config says (e.g. the bias never
reaches attention); ``warning`` = results are distorted; ``info`` = worth knowing when reading
numbers, nothing is broken by it.

This module is the package's public interface; importing it registers every rule.
"""

from aqr_cli.analysis.findings import (  # noqa: F401  (importing registers the rules)
    bias_rules,
    dump_rules,
    geometry_rules,
    head_rules,
    training_rules,
)
from aqr_cli.analysis.findings.context import CheckpointContext, torch_version_from_env
from aqr_cli.analysis.findings.registry import (
    NOT_CHECKED,
    RULES,
    SEVERITIES,
    Finding,
    QuirkRule,
    checkpoint_findings,
    dump_findings,
    finding_ids,
    readme_table,
    rule_ids,
    rules_for,
    sort_findings,
)
from aqr_cli.analysis.findings.training_rules import custom_key_finding

__all__ = [
    "NOT_CHECKED", "RULES", "SEVERITIES", "CheckpointContext", "Finding", "QuirkRule",
    "checkpoint_findings", "custom_key_finding", "dump_findings", "finding_ids", "readme_table",
    "rule_ids", "rules_for", "sort_findings", "torch_version_from_env",
]
