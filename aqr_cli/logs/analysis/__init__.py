"""Per-run summary of a training log, comparison of runs, AQR readings and log-level findings.

:func:`summarize_log` (:mod:`.fold`) folds the events of :class:`aqr_cli.logs.parse.LogParser`
into a :class:`RunSummary` (:mod:`.summary`) while streaming: counts, running sums, a time
histogram for the exact median, and series thinned by :class:`Thinned` to a fixed number of
points, so memory does not grow with the file. :func:`compare_runs` (:mod:`.compare`) puts runs
next to a baseline. Reading bands are the researchers' (spec 10.1, :mod:`.readings`); config
quirks come from the same rules ``inspect-checkpoint`` runs (:mod:`.config_quirks`); log-level
findings are in :mod:`.run_findings`. This module is the package's public interface.
"""

from aqr_cli.logs.analysis.compare import Comparison, compare_runs
from aqr_cli.logs.analysis.fold import summarize_log
from aqr_cli.logs.analysis.readings import renderer_clamp
from aqr_cli.logs.analysis.summary import (
    HEADLINE,
    MAIN_LOSSES,
    RELATIVE_CHANGE_BANDS,
    SCALE_NORMAL,
    SMALL_CLASSES,
    WEIGHT_MEAN_BANDS,
    WEIGHT_STD_BANDS,
    Reading,
    RunSummary,
    Thinned,
)

__all__ = [
    "HEADLINE", "MAIN_LOSSES", "RELATIVE_CHANGE_BANDS", "SCALE_NORMAL", "SMALL_CLASSES",
    "WEIGHT_MEAN_BANDS", "WEIGHT_STD_BANDS", "Comparison", "Reading", "RunSummary", "Thinned",
    "compare_runs", "renderer_clamp", "summarize_log",
]
