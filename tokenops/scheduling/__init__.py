"""Everything about running the purge on a schedule: one ``Schedule``, the project as a
scheduler will see it, ready-to-paste texts, and the django-celery-beat task."""
