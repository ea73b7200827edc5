"""Streaming parser for training logs: mmcv 1.x text, mmcv JSON (``*.log.json``), mmengine text.

:func:`open_log` sniffs the first bytes (binary files, checkpoints and empty files are refused
with a :class:`LogFormatError`); :meth:`LogParser.events` then reads the file line by line and
yields :mod:`aqr_cli.logs.records` events. Nothing but the current line, the open multi-line
block (environment, config dump, debug print) and a few counters is held, so memory does not
grow with the file. Text lines may carry ANSI colour codes, carriage returns (progress bars),
bytes that are not UTF-8 and output of several ranks; the logger prefix is searched anywhere in
a line, so a record glued to another rank's output is still found. Lines that look like a
record but cannot be read are counted with a reason (:attr:`LogParser.skipped`).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from aqr_cli.io.errors import LoadError
from aqr_cli.logs.debug_prints import feed_debug
from aqr_cli.logs.fields import as_int, json_numbers, record_fields, strip_prefix
from aqr_cli.logs.records import (
    ConfigText,
    DebugBlock,
    Event,
    HeaderItem,
    ModelParts,
    TrainRecord,
    ValRecord,
)

MAX_LINE = 1 << 20
"""Bytes read per line at most; a longer line (a progress bar without newline) is cut in pieces."""
MAX_CONFIG = 4 << 20
SNIFF = 64 << 10
EXAMPLES = 5

AQR_PARTS = ("aqr_weight_generator", "weight_renderer", "feature_modulator",
             "attention_bias_generator")

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_PREFIX = re.compile(r"(\d{4}[-/]\d{2}[-/]\d{2}) (\d{2}:\d{2}:\d{2})(?:,\d{3})? - (\S+) - "
                     r"([A-Z]+) - (.*)$")
_MMCV_TRAIN = re.compile(r"^Epoch \[(\d+)\]\[(\d+)/(\d+)\]\s*(.*)$")
_MMCV_ITER = re.compile(r"^Iter \[(\d+)/(\d+)\]\s*(.*)$")
_MMCV_VAL = re.compile(r"^(?:Epoch|Iter)\((?:val|test)\) \[(\d+)\](?:\[(\d+)\])?\s*(.*)$")
_ENG_TRAIN = re.compile(r"^Epoch\(train\)\s*\[\s*(\d+)\]\s*\[\s*(\d+)/\s*(\d+)\]\s*(.*)$")
_ENG_ITER = re.compile(r"^Iter\(train\)\s*\[\s*(\d+)/\s*(\d+)\]\s*(.*)$")
_ENG_VAL = re.compile(r"^(?:Epoch|Iter)\((?:val|test)\)\s*(?:\[\s*(\d+)\]\s*)?\[\s*(\d+)/\s*(\d+)\]\s*(.*)$")
_RECORD_HINT = re.compile(r"^(?:Epoch|Iter)(?:\((?:train|val|test)\))?\s*\[")

_OLD_BLOCK = re.compile(r"AQR Debug Info \(Forward #(\d+)\)")
_NEW_BLOCK = re.compile(r"\[AttentionBias\] Monitoring Report \(Iter (\d+)\)")
_HEAD_BLOCK = re.compile(r"AQR Attention Bias Debug \(Iteration (\d+)\)")


_CHATTER = re.compile(r"^(?:/\S+\.py:\d+: \w*Warning|WARNING:|INFO:|ERROR:|\s+warnings\.warn\(|"
                      r"\s+logger\.warn\(|projects\.|\*{5,}|Setting OMP_NUM_THREADS|fatal: )")
_PART_RE = re.compile(r"\((" + "|".join(AQR_PARTS) + r")\):")

_ENV_KEYS = {
    "PyTorch": "torch", "CUDA available": "cuda_available", "CUDA_HOME": "cuda_home",
    "NVCC": "nvcc", "MMCV": "mmcv", "MMDetection": "mmdet", "MMDetection3D": "mmdet3d",
    "MMEngine": "mmengine", "TorchVision": "torchvision", "Python": "python",
    "MMCV CUDA Compiler": "mmcv_cuda", "sys.platform": "platform",
}


class LogFormatError(LoadError):
    """The file is not a training log this parser reads (binary, checkpoint, empty, no records).

    ``message`` is the whole line, starting with the file name."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(None, message, hint=hint)


def sniff(path: Path) -> str:
    """``'json'`` or ``'text'`` from the first bytes; :class:`LogFormatError` for what is no log."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF)
    except IsADirectoryError:
        raise LogFormatError(f"{path}: is a folder with no log in it") from None
    except FileNotFoundError:
        raise LogFormatError(f"{path}: no such file") from None
    if not head.strip():
        raise LogFormatError(f"{path}: empty file, not a training log")
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05":
        raise LogFormatError(f"{path}: a checkpoint or pickle, not a training log",
                             "use aqr inspect-checkpoint for checkpoints")
    if len(head) >= 10 and head[8:10] == b'{"' and int.from_bytes(head[:8], "little") < (1 << 30):
        raise LogFormatError(f"{path}: a safetensors file, not a training log",
                             "use aqr inspect-checkpoint for checkpoints")
    if b"\x00" in head:
        raise LogFormatError(f"{path}: binary file, not a training log")
    lines = [ln.strip() for ln in head.split(b"\n")[:-1] or [head] if ln.strip()]
    objs = 0
    for ln in lines[:50]:
        if ln.startswith(b"{") and ln.endswith(b"}"):
            try:
                objs += isinstance(json.loads(ln), dict)
            except ValueError:
                pass
    return "json" if lines and objs >= max(1, len(lines[:50]) // 2) else "text"


class LogParser:
    """One pass over one log; iterate :meth:`events`, then read the counters.

    After iteration: ``format`` (``'mmcv-json'``, ``'mmcv-text'``, ``'mmengine-text'``,
    ``'text'`` when no record told), ``lines`` read, ``skipped`` (reason -> count),
    ``examples`` (first few skipped lines), ``decode_errors`` (lines with bytes that are not
    UTF-8), ``carriage_returns`` and ``ansi_lines``.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.kind = sniff(self.path)
        self.format = "mmcv-json" if self.kind == "json" else "text"
        self.lines = 0
        self.skipped: Counter = Counter()
        self.examples: list[dict[str, Any]] = []
        self.decode_errors = 0
        self.carriage_returns = 0
        self.ansi_lines = 0
        self.size_bytes = self.path.stat().st_size
        self._flavours: Counter = Counter()
        self._orders: Counter = Counter()

    def _skip(self, line_no: int, reason: str, text: str) -> None:
        self.skipped[reason] += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append({"line": line_no, "reason": reason, "text": text[:160]})

    def events(self) -> Iterator[Event]:
        with open(self.path, "rb") as fh:
            if self.kind == "json":
                yield from self._json_events(fh)
            else:
                yield from self._text_events(fh)
        if self._flavours:
            self.format = self._flavours.most_common(1)[0][0]

    def _json_events(self, fh: BinaryIO) -> Iterator[Event]:
        for n, text, ended in self._pieces(fh):
            text = text.strip()
            if not text:
                continue
            try:
                obj = json.loads(text)
            except ValueError:
                self._skip(n, "truncated JSON at end of file" if not ended else "not JSON", text)
                continue
            if not isinstance(obj, dict):
                self._skip(n, "JSON value is not an object", text)
                continue
            mode = obj.get("mode")
            if mode == "train":
                rec = self._train_from_fields(n, obj.get("epoch"), obj.get("iter"), None,
                                              json_numbers(obj))
                if rec is None:
                    self._skip(n, "train record without iteration", text)
                else:
                    yield rec
            elif mode in ("val", "test"):
                vals = {strip_prefix(k): float(v) for k, v in obj.items()
                        if k not in ("mode", "epoch", "iter", "lr", "time", "data_time", "memory")
                        and isinstance(v, (int, float)) and not isinstance(v, bool)}
                if vals:
                    yield ValRecord(n, as_int(obj.get("epoch")), as_int(obj.get("iter")), vals)
            elif mode is None:
                yield from self._json_header(n, obj)
            else:
                self._skip(n, f"unknown mode {mode!r}", text)

    def _json_header(self, n: int, obj: dict) -> Iterator[Event]:
        env = obj.get("env_info")
        if isinstance(env, str):
            for line in env.splitlines():
                yield from self._env_line(n, line)
        for key, name in (("seed", "seed"), ("exp_name", "exp_name"),
                          ("mmdet_version", "mmdet"), ("mmdet3d_version", "mmdet3d")):
            if obj.get(key) is not None:
                yield HeaderItem(n, name, obj[key])
        cfg = obj.get("config")
        if isinstance(cfg, str) and cfg.strip():
            yield ConfigText(n, cfg[:MAX_CONFIG], len(cfg) > MAX_CONFIG)

    def _pieces(self, fh: BinaryIO) -> Iterator[tuple[int, str, bool]]:
        """Clean text pieces: ANSI codes removed, carriage-return segments split apart.

        Reads, decodes and cleans in one generator (this loop runs once per line).
        """
        readline = fh.readline
        n = 0
        while True:
            raw = readline(MAX_LINE)
            if not raw:
                return
            n += 1
            self.lines = n
            ended = raw[-1:] == b"\n"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                self.decode_errors += 1
                text = raw.decode("utf-8", errors="replace")
            if "\x1b" in text:
                self.ansi_lines += 1
                text = _ANSI.sub("", text)
            if "\r" in text:
                self.carriage_returns += 1
                parts = [p for p in text.rstrip("\n").split("\r") if p.strip()]
                for i, p in enumerate(parts):
                    yield n, p.rstrip(), ended or i < len(parts) - 1
                if not parts:
                    yield n, "", ended
                continue
            yield n, text.rstrip(), ended

    def _text_events(self, fh: BinaryIO) -> Iterator[Event]:
        block: dict[str, Any] | None = None  # the open multi-line section
        for n, text, ended in self._pieces(fh):
            m = _PREFIX.search(text) if " - " in text else None
            if m is not None:
                if block is not None:
                    yield from self._close(block)
                    block = None
                msg = m.group(5).strip()
                block = yield from self._message(n, msg, ended)
                continue
            hdr = self._debug_header(text) if "Debug" in text or "Monitoring" in text else None
            if hdr is not None:
                if block is not None:
                    yield from self._close(block)
                block = hdr
                block["line"] = n
                continue
            if block is not None:
                done = self._feed(block, text)
                if done:
                    yield from self._close(block)
                    block = None
        if block is not None:
            if block["type"] == "debug":
                block["event"].complete = block.get("ended", False)
            yield from self._close(block)

    def _message(self, n: int, msg: str, ended: bool):
        """Handle one logger message; return the multi-line block it opens (or None)."""
        if msg.startswith(("Epoch", "Iter")) and _RECORD_HINT.match(msg):
            ev = self._record(n, msg, ended)
            if ev is not None:
                yield ev
            return None
        if msg == "Environment info:" or msg in ("System environment:", "Runtime environment:"):
            return {"type": "env", "line": n, "dashes": 0}
        if msg == "Config:":
            return {"type": "config", "line": n, "lines": [], "size": 0, "truncated": False}
        if msg == "Model:":
            return {"type": "model", "line": n, "parts": set()}
        for ev in self._header_message(n, msg):
            yield ev
        return None

    def _header_message(self, n: int, msg: str) -> Iterator[HeaderItem]:
        if msg.startswith("Exp name:"):
            yield HeaderItem(n, "exp_name", msg.split(":", 1)[1].strip())
        elif m := re.match(r"Set random seed to (-?\d+)(?:, deterministic: (\w+))?", msg):
            yield HeaderItem(n, "seed", int(m.group(1)))
            if m.group(2):
                yield HeaderItem(n, "deterministic", m.group(2) == "True")
        elif m := re.match(r"load checkpoint from (?:[\w ]+ path: )?(\S+)", msg):
            yield HeaderItem(n, "load_checkpoint", m.group(1))
        elif m := re.search(r"work_dir: (\S+)", msg):
            yield HeaderItem(n, "work_dir", m.group(1))
        elif m := re.search(r"workflow: (.*), max: (\d+) (epochs|iters)", msg):
            yield HeaderItem(n, "max_epochs" if m.group(3) == "epochs" else "max_iters",
                             int(m.group(2)))
        elif m := re.match(r"Distributed training: (\w+)", msg):
            yield HeaderItem(n, "distributed", m.group(1) == "True")
        elif m := re.match(r"Resum(?:ed|ing) (?:from )?(.*)", msg):
            yield HeaderItem(n, "resumed_from", m.group(1).strip())

    def _env_line(self, n: int, line: str) -> Iterator[HeaderItem]:
        line = line.strip()
        if m := re.match(r"GPU ([\d,]+): (.+)$", line):
            ids = [int(i) for i in m.group(1).split(",") if i]
            yield HeaderItem(n, "gpus", [{"ids": ids, "name": m.group(2).strip()}])
            return
        if m := re.match(r"- CUDA Runtime (\S+)", line):
            yield HeaderItem(n, "cuda_runtime", m.group(1))
            return
        if ":" not in line:
            return
        key, value = (p.strip() for p in line.split(":", 1))
        if key in _ENV_KEYS and value:
            yield HeaderItem(n, _ENV_KEYS[key], value)
        elif key == "CUDA Runtime" and value:
            yield HeaderItem(n, "cuda_runtime", value)

    def _debug_header(self, text: str) -> dict[str, Any] | None:
        for kind, rx in (("modulation", _OLD_BLOCK), ("bias_monitor", _NEW_BLOCK),
                         ("head_bias", _HEAD_BLOCK)):
            m = rx.search(text)
            if m is not None:
                counter = int(m.group(1))
                order = self._orders[(kind, counter)]
                self._orders[(kind, counter)] += 1
                ev = DebugBlock(0, kind, counter, order)
                return {"type": "debug", "event": ev, "section": None, "indent": 0, "group": None,
                        "row": None, "seen": 0}
        return None

    def _feed(self, block: dict[str, Any], text: str) -> bool:
        """Add one line to the open block; True when the line closes it."""
        kind = block["type"]
        if kind == "env":
            if re.match(r"^-{10,}\s*$", text):
                block["dashes"] += 1
                return block["dashes"] >= 2
            block.setdefault("items", []).extend(self._env_line(block["line"], text))
            return False
        if kind == "config":
            if _CHATTER.match(text):
                return False
            if not block["truncated"]:
                block["size"] += len(text) + 1
                if block["size"] > MAX_CONFIG:
                    block["truncated"] = True
                else:
                    block["lines"].append(text)
            return False
        if kind == "model":
            for m in _PART_RE.finditer(text):
                block["parts"].add(m.group(1))
            return False
        return feed_debug(block, text)

    def _close(self, block: dict[str, Any]) -> Iterator[Event]:
        kind = block["type"]
        if kind == "env":
            gpus: list = []
            for item in block.get("items", []):
                if item.key == "gpus":
                    gpus.extend(item.value)
                else:
                    yield item
            if gpus:
                yield HeaderItem(block["line"], "gpus", gpus)
        elif kind == "config":
            if block["lines"]:
                yield ConfigText(block["line"], "\n".join(block["lines"]) + "\n", block["truncated"])
        elif kind == "model":
            yield ModelParts(block["line"], tuple(sorted(block["parts"])))
        elif kind == "debug":
            ev: DebugBlock = block["event"]
            ev.line = block["line"]
            if not block.get("ended"):
                ev.complete = False
            if block["seen"]:
                yield ev
            else:
                self._skip(block["line"], "AQR debug header without values", "")

    def _record(self, n: int, msg: str, ended: bool) -> Event | None:
        for flavour, rx, groups in (
                ("mmcv-text", _MMCV_TRAIN, "e i n t"), ("mmengine-text", _ENG_TRAIN, "e i n t"),
                ("mmcv-text", _MMCV_ITER, "i n t"), ("mmengine-text", _ENG_ITER, "i n t")):
            m = rx.match(msg)
            if m is None:
                continue
            g = dict(zip(groups.split(), m.groups()))
            if not ended:
                self._skip(n, "record cut at end of file", msg)
                return None
            fields, bad = record_fields(g["t"])
            if bad:
                self._skip(n, "unreadable record field", msg)
                return None
            rec = self._train_from_fields(n, g.get("e"), g["i"], g["n"], fields)
            if rec is None or (rec.time is None and rec.loss is None):
                self._skip(n, "record without time or loss", msg)
                return None
            self._flavours[flavour] += 1
            return rec
        for flavour, rx in (("mmengine-text", _ENG_VAL), ("mmcv-text", _MMCV_VAL)):
            m = rx.match(msg)
            if m is None:
                continue
            if not ended:
                self._skip(n, "record cut at end of file", msg)
                return None
            if rx is _MMCV_VAL:
                epoch, it, tail = m.group(1), m.group(2), m.group(3)
            else:
                epoch, it, tail = m.group(1), m.group(2), m.group(4)
            fields, bad = record_fields(tail)
            if bad:
                self._skip(n, "unreadable record field", msg)
                return None
            vals = {strip_prefix(k): v for k, v in fields.items()
                    if k not in ("lr", "eta", "time", "data_time", "memory")}
            self._flavours[flavour] += 1
            if not vals:
                return None  # an mmengine validation progress line
            return ValRecord(n, as_int(epoch), as_int(it), vals)
        self._skip(n, "unrecognised record", msg)
        return None

    def _train_from_fields(self, n, epoch, it, per, fields: dict[str, float]) -> TrainRecord | None:
        """A :class:`TrainRecord` from numeric fields (consumed: the dict is emptied)."""
        it = as_int(it)
        if it is None:
            return None
        pop = fields.pop
        rec = TrainRecord(n, as_int(epoch), it, as_int(per), pop("lr", None), pop("time", None),
                          pop("data_time", None), pop("memory", None), pop("loss", None),
                          pop("grad_norm", None))
        lrs = [k for k in fields if k.startswith("lr_") or k.endswith("_lr") or k == "base_lr"]
        if rec.lr is None and lrs:
            rec.lr = fields[lrs[0]]
        for k in lrs:
            del fields[k]
        losses, extra = rec.losses, rec.extra
        for key, v in fields.items():
            if "loss" in key:
                losses[key] = v
            else:
                extra[key] = v
        return rec
