"""The web server's settings: its limits and models, from ``catscan serve``'s options or the
``CATSCAN_*`` environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .uploads import UploadLimits

DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_QUEUE = 16
DEFAULT_MAX_UPLOADS = 32
DEFAULT_IDLE_TIMEOUT = 10.0
DEFAULT_UPLOAD_DEADLINE = 60.0
DEFAULT_MIN_UPLOAD_RATE = 8 * 1024  # bytes a second, on average, after the first idle_timeout seconds
DEFAULT_ADMISSION_WAIT = 2.0  # seconds a scan request may wait at the door for room before its 503


def _env_number(name: str, kind: type, default):
    """The environment variable ``name`` as a non-negative ``kind`` (int or float), else ``default``."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = -1
    if not value >= 0:  # also NaN
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"{name}={raw!r}: it must be {what}, 0 or more (unset it for the default, {default}).")
    return value


@dataclass(frozen=True)
class Settings:
    """The server's limits; :meth:`from_env` reads ``CATSCAN_*`` variables (see ``catscan serve --help``)."""

    model_dir: str | None = None
    threads: int = 0  # inference threads; 0: one per core
    max_queue: int = DEFAULT_MAX_QUEUE
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_uploads: int = DEFAULT_MAX_UPLOADS
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    upload_deadline: float = DEFAULT_UPLOAD_DEADLINE
    min_upload_rate: float = DEFAULT_MIN_UPLOAD_RATE  # 0: no minimum
    admission_wait: float = DEFAULT_ADMISSION_WAIT  # 0: answer 503 at once when there is no room
    runtime: str | None = None  # inference runtime and precision; None: "auto", which reads CATSCAN_RUNTIME
    precision: str | None = None  # ... and CATSCAN_PRECISION (see catscanner.runtime.engine)

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        """Settings from the ``CATSCAN_*`` environment, ``overrides`` (not None) winning; raises
        ValueError naming the variable when one is not a number of the right kind."""
        env = {
            "model_dir": os.environ.get("CATSCAN_MODEL_DIR") or None,
            "threads": _env_number("CATSCAN_THREADS", int, 0),
            "max_queue": _env_number("CATSCAN_MAX_QUEUE", int, DEFAULT_MAX_QUEUE),
            "max_upload_bytes": _env_number("CATSCAN_MAX_UPLOAD_BYTES", int, DEFAULT_MAX_UPLOAD_BYTES),
            "admission_wait": _env_number("CATSCAN_ADMISSION_WAIT", float, DEFAULT_ADMISSION_WAIT),
        }
        return cls(**{**env, **{k: v for k, v in overrides.items() if v is not None}})

    @property
    def upload_limits(self) -> UploadLimits:
        return UploadLimits(self.max_upload_bytes, self.idle_timeout, self.upload_deadline, self.min_upload_rate)
