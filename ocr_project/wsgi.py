"""WSGI entry point (gunicorn ocr_project.wsgi; runserver uses it too)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ocr_project.settings")
application = get_wsgi_application()

if os.environ.get("OCR_WARM_UP", "1") == "1":
    # Register the shipped model when none is active and warm the active one in the
    # background: /healthz answers at once, /readyz turns ready when the model is warm.
    from django.db import connection

    from ocr_app.startup import start_serving_process

    start_serving_process()
    connection.close()  # the main thread serves no request: hold no connection for it

if os.environ.get("OCR_JOB_RUNNER", "1") == "1":
    # Without a broker, jobs run in this process (a background thread); with one, `make worker` runs them.
    from ocr_app.jobs import dispatch, runner

    if not dispatch.uses_broker():
        runner.start()
        # Book adaptations too: a thread that waits while `python -m training.adapt` trains in a subprocess.
        from ocr_app.books import runner as adaptation_runner

        adaptation_runner.start()
