"""The one error type every state raises: a spec code, the dataset and the offending key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class SegmentError(Exception):
    """A fail-closed abort carrying the spec's error code (e.g. ``2B-S0-011``).

    The message always names the code, the dataset and, where there is one, the offending key,
    so an operator never has to read a traceback from deep inside a library.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        dataset: str | None = None,
        key: str | None = None,
        validator: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        self.code = code
        self.dataset = dataset
        self.key = key
        self.validator = validator
        self.context: dict[str, Any] = dict(context or {})
        parts = [f"[{code}] {message}"]
        if dataset:
            parts.append(f"dataset={dataset}")
        if key:
            parts.append(f"key={key}")
        super().__init__(" | ".join(parts))
        self.short_message = message

    def payload(self) -> dict[str, Any]:
        """The failure payload of the state documents (code, message, validator, context)."""
        return {
            "code": self.code,
            "severity": "Abort",
            "message": self.short_message,
            "validator": self.validator or "runtime",
            "dataset": self.dataset,
            "key": self.key,
            "context": self.context,
        }
