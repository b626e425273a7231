"""The example project's Celery app, wired the way the Celery docs show for Django.

Run a worker and beat from the project directory::

    celery -A my_bathhouse_backend worker --loglevel=INFO        (Windows: add --pool=solo)
    celery -A my_bathhouse_backend beat --loglevel=INFO
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "my_bathhouse_backend.settings")

app = Celery("my_bathhouse_backend")
# Every CELERY_* Django setting configures Celery (CELERY_BROKER_URL -> broker_url, ...).
app.config_from_object("django.conf:settings", namespace="CELERY")
# Finds tokenops.tasks (and any other installed app's tasks module).
app.autodiscover_tasks()
