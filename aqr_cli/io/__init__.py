"""Checkpoints, upstream debug dumps, config text and atomic report writes.

Importing this package is cheap: torch, numpy and matplotlib are imported inside the functions
that need them.
"""

from aqr_cli.io.atomic import (
    atomic_open,
    atomic_save_figure,
    atomic_save_npz,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    staged_output_dir,
)
from aqr_cli.io.checkpoint import (
    DUMP_KEYS,
    CheckpointMeta,
    DebugDump,
    LoadedFile,
    load_checkpoint,
    load_dump,
    load_file,
)
from aqr_cli.io.config_parse import (
    AQRConfig,
    ParsedConfig,
    Sourced,
    aqr_config_from_file,
    aqr_config_from_text,
    extract_aqr_config,
    parse_config_file,
    parse_config_text,
)
from aqr_cli.io.errors import ConfigParseError, LoadError, OutputError
from aqr_cli.io.safe_load import safe_torch_load

__all__ = [
    "AQRConfig", "CheckpointMeta", "ConfigParseError", "DUMP_KEYS", "DebugDump", "LoadError",
    "LoadedFile", "OutputError", "ParsedConfig", "Sourced",
    "aqr_config_from_file", "aqr_config_from_text", "atomic_open", "atomic_save_figure",
    "atomic_save_npz", "atomic_write_bytes", "atomic_write_json", "atomic_write_text",
    "extract_aqr_config", "load_checkpoint", "load_dump", "load_file", "parse_config_file",
    "parse_config_text", "safe_torch_load", "staged_output_dir",
]
