"""One error shape for every API failure: ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.views import exception_handler

log = logging.getLogger("ocr_app")


class ApiError(exceptions.APIException):
    """An error we raise on purpose, with a stable machine-readable code."""

    def __init__(self, code: str, message: str, http_status: int = status.HTTP_400_BAD_REQUEST,
                 details: dict | None = None):
        super().__init__(detail=message, code=code)
        self.status_code = http_status
        self.error_code = code
        self.message = message
        self.details = details   # what a client needs to act on the error (error.details), if anything


def error_body(code: str, message: str, details=None) -> dict:
    body = {"error": {"code": code, "message": message}}
    if details:
        body["error"]["details"] = details
    return body


def _first_message(detail) -> str:
    if isinstance(detail, dict):
        key, value = next(iter(detail.items()))
        return f"{key}: {_first_message(value)}" if key != "non_field_errors" else _first_message(value)
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def json_exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig):
        exc = ApiError("request_too_large", "the request body is larger than the upload limit",
                       status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    elif isinstance(exc, TooManyFilesSent):
        exc = ApiError("too_many_files", "the request has more files than the batch limit",
                       status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    elif isinstance(exc, TooManyFieldsSent):   # raised while DRF parses the body, so it reaches this handler
        exc = ApiError("too_many_fields", f"the request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} "
                                          "form fields")
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None  # a real bug: let Django log it and answer 500
    if isinstance(exc, ApiError):
        code, message = exc.error_code, exc.message
    elif isinstance(exc, exceptions.ValidationError):
        code, message = "invalid_request", _first_message(exc.detail)
    else:
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else getattr(exc, "default_code", "error")
        message = _first_message(exc.detail)
    details = exc.detail if isinstance(exc, exceptions.ValidationError) else getattr(exc, "details", None)
    response.data = error_body(code, message, details)
    # An error is JSON whatever the client accepts: a browser's Accept (text/html) or ?format=api chose the
    # browsable API's HTML page, which a client reading error.code cannot parse.
    request = context.get("request")
    if request is not None:
        request.accepted_renderer, request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
    return response
