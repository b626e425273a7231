"""Keep the djangorestframework-simplejwt token blacklist clean, safe and small."""

__version__ = "0.1.0"
