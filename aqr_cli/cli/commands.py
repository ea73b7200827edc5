"""Registers every command on the app (imported lazily by :func:`aqr_cli.cli.app.main`)."""

from __future__ import annotations

from aqr_cli.cli import compare_cmd, inspect_cmd, inspect_log_cmd, render_cmd  # noqa: F401  (each registers itself)
