"""Content negotiation for every API view: an unknown ``?format=`` is a bad parameter (400), not a missing page.

DRF answers a ``?format=`` no renderer of the view offers with 404, so ``/api/v1/recognitions/7/?format=csv``
(CSV is the list's) read as "recognition 7 does not exist". Views that answer other formats themselves
(pages: ALTO, PAGE-XML, hOCR) negotiate on their own.
"""

from __future__ import annotations

from django.http import Http404
from rest_framework.negotiation import DefaultContentNegotiation


class FormatParameterNegotiation(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except Http404:
            from .errors import ApiError  # here: DRF loads this class while ocr_app.errors imports rest_framework

            asked = format_suffix or request.query_params.get(self.settings.URL_FORMAT_OVERRIDE, "")
            offered = sorted({r.format for r in renderers} - {"api"})  # the browsable page is not a format to ask for
            raise ApiError("invalid_request", f"unknown format {asked!r} here; ask for "
                                              f"{' or '.join(offered)} (json is the default)") from None
