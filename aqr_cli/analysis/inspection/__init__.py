"""What ``aqr inspect-checkpoint`` computes: one report per checkpoint or debug dump.

- :mod:`.reports`: the result types (:class:`CheckpointReport`, :class:`DumpReport` and parts);
- :mod:`.checkpoint`: :func:`inspect_checkpoint`; :mod:`.dump`: :func:`inspect_dump`;
  :mod:`.files`: :func:`inspect_file`, whichever the file is;
- :mod:`.components`, :mod:`.tensors`, :mod:`.projection`: the parts of a checkpoint report;
- :mod:`.tree`: the key tree (``--keys``); :mod:`.epochs`: series across checkpoints.

The checks of tensors against settings that every command applies live in
:mod:`aqr_cli.inputs.checks`. The command's Rich table, its JSON (``report.to_dict()``) and the
epoch PNG are views of these dataclasses.
"""
