"""Django system checks (``manage.py check``, and before ``runserver`` and ``migrate``): settings that would
make every request fail are said at start-up, naming the setting."""

from __future__ import annotations

from django.core import checks


@checks.register()
def language_model_setting(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """``OCR_LANGUAGE_MODEL`` names a language model file that loads (read once: the engine keeps it)."""
    from . import engine

    problem = engine.language_model_problem()
    if problem is None:
        return []
    return [checks.Error(problem, hint="set OCR_LANGUAGE_MODEL to a file built by `python -m training.char_lm "
                                       "build` (a relative path is taken from the project folder), or unset it "
                                       "for greedy decoding", id="ocr_app.E001")]
