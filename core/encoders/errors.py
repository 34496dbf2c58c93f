"""The encoders' error type, importable without torch (the studio and the CLI parser use it)."""

from __future__ import annotations


class EncoderError(RuntimeError):
    """An encoder cannot be created or used: unknown name, bad spec, weights not available."""
