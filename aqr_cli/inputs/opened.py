"""The one place a checkpoint or a debug dump is opened: loaded once, validated once.

:func:`open_checkpoint` loads a checkpoint (:func:`aqr_cli.io.checkpoint.load_file`, which
applies the content checks of :mod:`aqr_cli.io.validate`), resolves its settings
(:mod:`aqr_cli.inputs.settings`) and checks its tensors against them
(:mod:`aqr_cli.inputs.checks`): an :class:`OpenedCheckpoint` is a file every command can use.
:func:`open_dump` does the same for a dump, :func:`open_input` for either kind. An
:class:`Opener` keeps what one command run opened, so a file named twice (a source and the
``--checkpoint`` of the dumps) is read once. Errors are :class:`LoadError` subclasses and
:class:`aqr_cli.core.errors.AQRInputError`; the CLI turns them into one line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Union

from aqr_cli.inputs.checks import Check, ShapesReport, head_prefix, raise_fatal, shapes_and_checks
from aqr_cli.inputs.settings import Settings, checkpoint_settings
from aqr_cli.io.checkpoint import DebugDump, LoadedFile, load_file
from aqr_cli.io.errors import LoadError

HEAD = "pts_bbox_head."
MAP_KEYS = ("lidar_weights", "camera_weights", "pts_bev", "weight_map_bev", "weight_map_pers")
"""What rendering a dump needs beyond the content checks every command applies."""


class NoGeneratorError(LoadError):
    """A checkpoint without ``aqr_weight_generator.*`` weights where a command needs them."""


@dataclass
class _Opened:
    """A file opened once: its path and name are the loaded file's."""

    file: LoadedFile

    @property
    def path(self) -> Path:
        return self.file.path

    @property
    def name(self) -> str:
        return self.file.name


@dataclass
class OpenedCheckpoint(_Opened):
    """A checkpoint loaded and checked against its settings (``settings``: config over defaults)."""

    settings: Settings
    prefix: str | None                   # what precedes the AQR submodule names, e.g. 'pts_bbox_head.'
    shapes: ShapesReport                 # feature shapes from the settings and what the tensors say
    checks: list[Check] = field(default_factory=list)

    @property
    def state_dict(self) -> dict[str, Any]:
        return self.file.state_dict

    @cached_property
    def head(self) -> dict[str, Any]:
        """The ``pts_bbox_head.*`` tensors without the prefix (the whole state dict if none);
        built once, however many dumps of a batch the checkpoint serves."""
        sd = self.file.state_dict
        return {k[len(HEAD):]: v for k, v in sd.items() if k.startswith(HEAD)} or dict(sd)

    def require_generator(self) -> dict[str, Any]:
        """:attr:`head`; :class:`NoGeneratorError` when it holds no AQR weight generator."""
        head = self.head
        if not any(k.startswith("aqr_weight_generator.") for k in head):
            raise NoGeneratorError(self.path, "no AQR weight generator in this checkpoint "
                                   "(no pts_bbox_head.aqr_weight_generator.* keys)")
        return head


@dataclass
class OpenedDump(_Opened):
    """An upstream debug dump (spec 6.2), loaded and checked for content every command uses."""

    @property
    def dump(self) -> DebugDump:
        assert self.file.dump is not None  # load_file sets it for every debug dump
        return self.file.dump

    @property
    def tensors(self) -> dict[str, Any]:
        return self.dump.tensors

    def require_maps(self) -> None:
        """:class:`LoadError` when the dump lacks what drawing its weights needs (:data:`MAP_KEYS`)."""
        missing = [k for k in MAP_KEYS if k not in self.tensors]
        if missing:
            raise LoadError(self.path, f"debug dump lacks {', '.join(missing)}")

    def map_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """``([H, W], [V, h, w])`` of the recorded BEV and camera maps."""
        return (tuple(self.tensors["weight_map_bev"].shape[-2:]),
                tuple(self.tensors["weight_map_pers"].shape[-3:]))


Opened = Union[OpenedCheckpoint, OpenedDump]
Source = Union[str, "os.PathLike[str]", LoadedFile]


def _loaded(path: Source, expect: str | None) -> LoadedFile:
    lf = path if isinstance(path, LoadedFile) else load_file(path, expect=expect)
    if expect is not None and lf.kind != expect:
        want = "a checkpoint" if expect == "checkpoint" else "an AQR debug dump"
        got = "an AQR debug dump" if lf.kind == "debug_dump" else "a checkpoint"
        raise LoadError(lf.path, f"expected {want}, but the file is {got}")
    return lf


def open_checkpoint(path: Source, config_path: str | os.PathLike | None = None) -> OpenedCheckpoint:
    """A checkpoint with its settings (``config_path``, else ``meta['config']``), verified.

    Raises :class:`LoadError` for a file no command can read and
    :class:`aqr_cli.inputs.checks.ShapeMismatchError` when the settings cannot describe its tensors.
    """
    lf = _loaded(path, "checkpoint")
    settings = checkpoint_settings(lf, config_path)
    prefix = head_prefix(lf.state_dict)
    shapes, checks = shapes_and_checks(lf.state_dict, prefix, settings.config)
    raise_fatal(lf.path, checks)
    return OpenedCheckpoint(lf, settings, prefix, shapes, checks)


def open_dump(path: Source) -> OpenedDump:
    """A debug dump, its content checked (:mod:`aqr_cli.io.validate`)."""
    return OpenedDump(_loaded(path, "debug_dump"))


def open_input(path: Source, config_path: str | os.PathLike | None = None) -> Opened:
    """:func:`open_checkpoint` or :func:`open_dump`, whichever the file holds."""
    lf = _loaded(path, None)
    return open_dump(lf) if lf.kind == "debug_dump" else open_checkpoint(lf, config_path)


class Opener:
    """What one command run has opened, by real path: each file is loaded and checked once."""

    def __init__(self) -> None:
        self._files: dict[str, LoadedFile] = {}
        self._checkpoints: dict[str, OpenedCheckpoint] = {}

    def file(self, path: str | os.PathLike) -> LoadedFile:
        """The loaded file at ``path`` (loaded on first use)."""
        key = os.path.realpath(path)
        if key not in self._files:
            self._files[key] = load_file(path)
        return self._files[key]

    def checkpoint(self, path: str | os.PathLike) -> OpenedCheckpoint:
        """:func:`open_checkpoint` of ``path``, once per run."""
        key = os.path.realpath(path)
        if key not in self._checkpoints:
            self._checkpoints[key] = open_checkpoint(self.file(path))
        return self._checkpoints[key]

    def dump(self, path: str | os.PathLike) -> OpenedDump:
        """:func:`open_dump` of ``path`` (the load is shared)."""
        return open_dump(self.file(path))


class CompanionError(LoadError):
    """A file given with the inputs in a ``role`` (``"checkpoint"``: the dumps' run checkpoint)
    could not be opened. Same message and hint as the underlying :class:`LoadError`; a front end
    may name the role (the CLI prefixes its flag)."""

    def __init__(self, role: str, err: LoadError):
        super().__init__(err.path, err.reason, blocked_globals=err.blocked_globals, hint=err.hint)
        self.role = role


def open_companions(opener: Opener, *, rig: str | os.PathLike | None = None,
                    config: str | os.PathLike | None = None,
                    checkpoint: str | os.PathLike | None = None) -> OpenedCheckpoint | None:
    """Fail once, early, on a bad rig, config or checkpoint given with the inputs (rather than
    once per input); returns the opened checkpoint (None without one).

    Raises what the rig and config readers raise, and :class:`CompanionError` for a checkpoint
    that cannot be opened.
    """
    from aqr_cli.io import parse_config_file
    from aqr_cli.io.rig import load_rig

    if rig is not None:
        load_rig(rig)
    if config is not None:
        parse_config_file(config)
    if checkpoint is None:
        return None
    try:
        return opener.checkpoint(checkpoint)
    except LoadError as e:
        raise CompanionError("checkpoint", e) from None
