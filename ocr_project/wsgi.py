"""WSGI entry point (gunicorn ocr_project.wsgi)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ocr_project.settings")
application = get_wsgi_application()

if os.environ.get("OCR_WARM_UP", "1") == "1":
    # Load and warm the active model in the background: /healthz answers at once,
    # /readyz turns ready when the model is warm.
    import threading

    from ocr_app.engine import warm_up_active

    threading.Thread(target=warm_up_active, name="model-warm-up", daemon=True).start()
