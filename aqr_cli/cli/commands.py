"""Registers every command on the app (imported lazily by :func:`aqr_cli.cli.app.main`)."""

from __future__ import annotations

import importlib

from aqr_cli.cli.app import app  # noqa: F401

for _name in ("inspect_cmd", "render_cmd", "compare_cmd"):
    try:
        importlib.import_module(f"aqr_cli.cli.{_name}")
    except ModuleNotFoundError as e:  # a command module not written yet
        if e.name != f"aqr_cli.cli.{_name}":
            raise
