from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TokenopsConfig(AppConfig):
    name = "tokenops"
    verbose_name = _("Token hygiene")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
