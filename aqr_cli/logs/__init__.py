"""Training logs: a streaming parser for mmcv/mmengine logs, per-run analysis and its views.

``parse`` turns a log into typed events (``records``), ``analysis`` folds them into a
:class:`~aqr_cli.logs.analysis.RunSummary` in memory that does not grow with the file, ``views``
renders summaries as JSON, CSV and terminal text. Nothing here imports torch or matplotlib.
"""
