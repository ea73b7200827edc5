"""The quirk-rule registry: :class:`Finding`, :class:`QuirkRule` and the :func:`quirk_rule`
decorator that registers a rule's id, the inputs it applies to, what it is decided from, when
it fires and its code in one place.

A rule's ``applies_to`` names the inputs whose findings it decides: ``'checkpoint'`` and
``'config'`` rules take a :class:`~aqr_cli.analysis.findings.context.CheckpointContext` (a
config alone, or a training log's printed config, gives a context without tensors);
``'dump'`` rules take a :class:`aqr_cli.analysis.inspection.reports.DumpReport`. A quirk decided on
checkpoints and on dumps from different evidence (Q2, Q3, Q4, NONFINITE) has one rule for each.
The README's quirk table is :func:`readme_table` (a test keeps the two equal).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

SEVERITIES = ("error", "warning", "info")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}
KINDS = ("checkpoint", "config", "dump")


@dataclass(frozen=True)
class Finding:
    """One decided quirk: ``id`` (``'Q15'``), ``severity``, ``message`` and numbers in ``detail``."""

    id: str
    severity: str
    message: str
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "severity": self.severity, "message": self.message,
                "detail": dict(self.detail)}


@dataclass(frozen=True)
class QuirkRule:
    """One registered rule: ``check(subject) -> Finding | None`` with its documentation.

    ``inputs`` (what the rule is decided from) and ``fires`` (when it fires, with the severity)
    are README markdown.
    """

    id: str
    applies_to: tuple[str, ...]
    inputs: str
    fires: str
    check: Callable[[Any], Finding | None]


RULES: list[QuirkRule] = []
"""Every registered rule, in registration order (filled when the rule modules are imported)."""

NOT_CHECKED: dict[str, str] = {
    "Q30": "a property of the upstream stub tool visualize_aqr_weights.py, not of any run",
    "Q31": "a property of the upstream tool visualize_attention.py, not of any run",
    "Q36": "holds for every CMT checkpoint alike (pos2embed ignores temperature); aqr reproduces it",
    "Q39": "a property of an upstream test script, not of any run",
    "Q41": "about numbers in the design notes, not about checkpoints",
}
"""Quirks no input of ``inspect-checkpoint`` can decide, with the reason."""


def quirk_rule(qid: str, applies_to: str | tuple[str, ...], *, inputs: str, fires: str):
    """Register the decorated function as the rule ``qid`` for the inputs ``applies_to``."""
    kinds = (applies_to,) if isinstance(applies_to, str) else tuple(applies_to)
    unknown = set(kinds) - set(KINDS)
    if unknown or ("dump" in kinds and len(kinds) > 1):
        raise ValueError(f"{qid}: applies_to {kinds} (dump rules take a dump report only)")

    def register(check: Callable[[Any], Finding | None]):
        if any(r.id == qid and set(r.applies_to) & set(kinds) for r in RULES):
            raise ValueError(f"{qid} registered twice for {kinds}")
        RULES.append(QuirkRule(qid, kinds, inputs, fires, check))
        return check

    return register


def rules_for(kind: str) -> list[QuirkRule]:
    """The rules that run on one kind of input (``'checkpoint'``, ``'config'``, ``'dump'``)."""
    return [r for r in RULES if kind in r.applies_to]


def rule_ids(applies_to: str | None = None) -> list[str]:
    """Ids of the rules that run on one kind of input, or (None) on any, in quirk order."""
    ids = {r.id for r in RULES if applies_to is None or applies_to in r.applies_to}
    return sorted(ids, key=_quirk_order)


def run_rules(kind: str, subject: Any) -> list[Finding]:
    """Every rule of ``kind`` that fires on ``subject``, sorted (errors first)."""
    return sort_findings([f for r in rules_for(kind) if (f := r.check(subject)) is not None])


def _quirk_order(qid: str) -> tuple[int, str]:
    m = re.match(r"Q(\d+)$", qid)
    return (int(m.group(1)) if m else 1000, qid)


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Errors first, then warnings, then info; by quirk number within a severity."""
    return sorted(findings, key=lambda f: (_RANK.get(f.severity, 9), *_quirk_order(f.id)))


def finding_ids(findings, empty: str = "-") -> str:
    """``E Q15  W Q3 Q9  +9 info``: error and warning ids, info findings counted."""
    err = [f.id for f in findings if f.severity == "error"]
    warn = [f.id for f in findings if f.severity == "warning"]
    info = sum(f.severity == "info" for f in findings)
    parts = (["E " + " ".join(err)] if err else []) + (["W " + " ".join(warn)] if warn else []) \
        + ([f"+{info} info"] if info else [])
    return "  ".join(parts) or empty


def readme_table() -> str:
    """The README's table of quirk rules (section ``Quirks checked``), generated from :data:`RULES`."""
    lines = ["| id | applies to | decided from | fires when |", "|---|---|---|---|"]
    for r in sorted(RULES, key=lambda r: (*_quirk_order(r.id), "dump" in r.applies_to)):
        lines.append(f"| {r.id} | {', '.join(r.applies_to)} | {r.inputs} | {r.fires} |")
    return "\n".join(lines)


def checkpoint_findings(ctx) -> list[Finding]:
    """Every checkpoint rule that fires on a ``CheckpointContext``, sorted (errors first)."""
    return run_rules("checkpoint", ctx)


def dump_findings(report) -> list[Finding]:
    """Every dump rule that fires on a :class:`aqr_cli.analysis.inspection.reports.DumpReport`, sorted."""
    return run_rules("dump", report)
