"""The test settings with psycopg 3 server-side binding on the default database."""

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES

DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = True
