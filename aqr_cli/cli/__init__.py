"""Typer commands: parse flags, call the library, hand results to an output sink."""
