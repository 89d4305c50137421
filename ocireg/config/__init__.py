"""ocireg's settings.

`Config` and its defaults (`settings.py`), the checks of each value
(`checks.py`), and the settings as the log shows them (`masking.py`).
"""

from ocireg.config.checks import ConfigError
from ocireg.config.masking import masked
from ocireg.config.settings import (
    DEFAULT_GRACE_PERIOD,
    DEFAULT_STAGING_TTL,
    DEFAULT_UPLOAD_TTL,
    LOG_FORMATS,
    LOG_LEVELS,
    TOKEN_ALGORITHMS,
    Config,
)

__all__ = [
    "DEFAULT_GRACE_PERIOD", "DEFAULT_STAGING_TTL", "DEFAULT_UPLOAD_TTL", "LOG_FORMATS",
    "LOG_LEVELS", "TOKEN_ALGORITHMS", "Config", "ConfigError", "masked",
]
