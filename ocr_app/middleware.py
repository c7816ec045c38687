"""Every failure under /api/ answers JSON, the unexpected ones included."""

from __future__ import annotations

import logging
import uuid

from django.http import JsonResponse

from .errors import error_body

log = logging.getLogger("ocr_app.errors")
API_PREFIX = "/api/"


def is_api_request(request) -> bool:
    return request.path.startswith(API_PREFIX)


class ApiInternalErrorMiddleware:
    """An exception no handler knew answers 500 ``internal_error`` JSON with a request id.

    The traceback is logged under the same id, so a user's report can be matched
    to it; the answer itself says nothing about the internals.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not is_api_request(request):
            return None  # the admin and the pages keep Django's own error handling
        request_id = uuid.uuid4().hex
        log.error("internal error, request_id=%s %s %s", request_id, request.method, request.path,
                  exc_info=(type(exception), exception, exception.__traceback__))
        body = error_body("internal_error", "an unexpected error occurred; quote the request_id when reporting it")
        body["error"]["request_id"] = request_id
        return JsonResponse(body, status=500)


def not_found(request, exception=None):
    """Django's 404 for URLs no view matched: JSON under /api/, the default page elsewhere."""
    if is_api_request(request):
        return JsonResponse(error_body("not_found", f"no such endpoint: {request.path}"), status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def server_error(request):
    """A 500 that escaped the middleware (e.g. raised in another middleware)."""
    if is_api_request(request):
        body = error_body("internal_error", "an unexpected error occurred")
        return JsonResponse(body, status=500)
    from django.views.defaults import server_error as default_server_error

    return default_server_error(request)
