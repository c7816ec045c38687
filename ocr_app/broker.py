"""Sending Celery tasks to the broker named by ``CELERY_BROKER_URL``, read at send time.

The Celery app's own connection is configured once, when it is first used; the
broker is read from the settings on each send instead, over one connection per
call, and the queue is declared before the first message so none is dropped
on a broker that has not seen the queue yet (RabbitMQ drops such messages).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings


def send(task, calls: Iterable[tuple], queue_name: str) -> None:
    """One message of ``task`` per argument tuple in ``calls``, on ``queue_name``."""
    from ocr_project.celery import app

    queue = app.amqp.queues.select_add(queue_name) or app.amqp.queues[queue_name]
    with app.connection_for_write(settings.CELERY_BROKER_URL) as connection:
        connection.ensure_connection(max_retries=2, interval_start=0.2, interval_step=0.5)
        queue.bind(connection.default_channel).declare()
        for args in calls:
            task.apply_async(args, connection=connection, queue=queue)
