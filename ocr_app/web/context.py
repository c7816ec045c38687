"""Template context every page needs."""

from __future__ import annotations

from ..review.selectors import is_reviewer


def navigation(request) -> dict:
    user = getattr(request, "user", None)
    return {"is_reviewer": bool(user is not None and is_reviewer(user))}
