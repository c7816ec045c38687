"""Reading one versioned JSON value from a model's metadata (calibration, transcription conventions).

Each such value is a JSON object with ``"version": 1`` stored under its own key of the ONNX
``metadata_props``. A model without the key reads as before (None); one whose value is not
JSON, not an object, of another version or missing a field fails with the caller's own error,
naming the key, so a broken model file is refused where it is loaded, not when a line is read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def read_versioned_json(text: str, key: str, what: str, error: type[ValueError], build: Callable[[dict], T]) -> T:
    """``build(data)`` of the version-1 JSON object ``text``; anything unreadable raises ``error``
    ("unreadable KEY: why", e.g. "unknown WHAT version 7")."""
    try:
        data = json.loads(text)
        if data.get("version") != 1:
            raise error(f"unknown {what} version {data.get('version')!r}")
        return build(data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # AttributeError: JSON that is no object
        raise error(f"unreadable {key}: {exc}") from exc


def read_optional_prop(props: dict[str, str], key: str, from_json: Callable[[str], T]) -> T | None:
    """``from_json`` of the model metadata's value under ``key``, or None where the model has none."""
    text = props.get(key)
    return from_json(text) if text else None
