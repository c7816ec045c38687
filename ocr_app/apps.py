from django.apps import AppConfig


class OcrAppConfig(AppConfig):
    name = "ocr_app"
    verbose_name = "Arabic OCR"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401 (registers the system checks)
