from django.apps import AppConfig, apps
from django.utils.translation import gettext_lazy as _


class TokenopsConfig(AppConfig):
    name = "tokenops"
    verbose_name = _("Token hygiene")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # importing it registers the system checks

        # Without simplejwt's blacklist app there is nothing to sweep (check E001 says so).
        if apps.is_installed(checks.BLACKLIST_APP):
            from .sweeping import connect

            connect()
