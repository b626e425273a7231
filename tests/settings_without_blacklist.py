"""The test settings with simplejwt's token_blacklist app left out, as a misconfigured project."""

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

INSTALLED_APPS = [
    app for app in INSTALLED_APPS if app != "rest_framework_simplejwt.token_blacklist"
]
