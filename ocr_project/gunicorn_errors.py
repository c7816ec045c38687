"""gunicorn's own error answers in the API's JSON error shape, not its HTML page.

A request gunicorn cannot parse (a bad request line, a URI or headers over its limits, a malformed header or
chunk) is answered by gunicorn itself before Django sees it, with ``util.write_error``'s HTML page. Clients of
the API parse ``{"error": {"code", "message"}}`` everywhere else (``ocr_app.errors``), so the config file swaps
that one function for a JSON writer, in the master before the workers fork.
"""

from __future__ import annotations

import json

from gunicorn import util

# gunicorn's statuses for what it refuses itself (gunicorn.workers.base.Worker.handle_error).
CODES = {
    400: "bad_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "headers_too_large",
    500: "internal_error",
    501: "not_implemented",
}


def error_response(status_int: int, reason: str, mesg: str) -> bytes:
    """The whole HTTP answer: status line, headers, JSON body (ASCII, so Content-Length counts bytes)."""
    body = json.dumps({"error": {"code": CODES.get(status_int, "bad_request"),
                                 "message": mesg or reason}}).encode("ascii")
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    util.write_nonblock(sock, error_response(status_int, reason, mesg))


def install() -> None:
    util.write_error = write_json_error
