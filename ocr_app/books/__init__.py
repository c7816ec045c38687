"""Book adaptation: a model fine-tuned on one book's reviewed lines, used for that book only.

A book is a job (``ocr_app.jobs``). Models, services (request, run, gate, re-recognise), the Celery
task on the training queue, the in-process runner for the embedded default, the API and the
review workspace's book panel live here.
"""
