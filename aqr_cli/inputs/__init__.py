"""One model of an input: a checkpoint or a debug dump opened once, and the settings it runs with.

- :mod:`aqr_cli.inputs.opened`: ``open_checkpoint``, ``open_dump``, ``open_input`` and the
  per-run ``Opener`` (each file loaded and validated once);
- :mod:`aqr_cli.inputs.settings`: where every AQR setting comes from (override, config file or
  ``meta['config']``, the file's tensors, the upstream defaults) and the core's
  ``ReferenceConfig`` built from it;
- :mod:`aqr_cli.inputs.checks`: the state dict against its settings (one verdict per file).
"""
