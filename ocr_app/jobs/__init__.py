"""Books as jobs: many pages recognised on a queue, with progress and downloadable results.

``models`` (Job, Page, PageFile, PageLine), ``intake`` (uploads -> pages),
``services`` (create, cancel, process one page), ``dispatch`` (Celery or the
in-process runner), ``results`` (results.zip), ``apis`` (HTTP).
"""
