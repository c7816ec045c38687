"""The JSON parser of every endpoint: DRF's, refusing what Python's json module lets through as no ValueError.

JSON may spell a lone UTF-16 surrogate (``"\\ud800"``), which is no character: Python's json decodes it into
a string that cannot be encoded to UTF-8, so the first database query or file name with it failed with a 500.
Arrays nested a hundred thousand deep exhaust the json module's recursion (a RecursionError, a 500 too).
JSON may also repeat a key (``{"model": "a", "model": "b"}``), and then which one counts depends on the
parser: a proxy that checked the first would let the second through here. All are parse errors.
"""

from __future__ import annotations

import json
import re

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding
from rest_framework.utils.json import strict_constant

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class DuplicateKeyError(ValueError):
    pass


def _object_without_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    found = {}
    for key, value in pairs:
        if key in found:
            raise DuplicateKeyError(f"the key {key!r} appears twice in one object")
        found[key] = value
    return found


def _lone_surrogate_in(value) -> bool:
    pending = [value]   # a stack, not recursion: nesting as deep as the parser allows must not overflow here
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _LONE_SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = get_encoding(parser_context or {})   # DRF's: a charset that is no text encoding is refused
        try:
            text = stream.read().decode(encoding)
            data = json.loads(text, object_pairs_hook=_object_without_duplicate_keys,
                              parse_constant=strict_constant if self.strict else None)
        except ValueError as exc:  # not JSON, not in its encoding, or a repeated key
            raise ParseError(f"JSON parse error - {exc}") from None
        except RecursionError:   # [[[[...]]]] a hundred thousand deep: Python's json gives up
            raise ParseError("JSON parse error - the body is nested too deeply") from None
        if _lone_surrogate_in(data):
            raise ParseError("JSON parse error - a string holds a lone UTF-16 surrogate escape (\\ud800-\\udfff), "
                             "which is not a character")
        return data
