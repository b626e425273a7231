"""Load the Celery app when Django starts, so shared_task binds to it (the Celery recipe)."""

from .celery import app as celery_app

__all__ = ("celery_app",)
