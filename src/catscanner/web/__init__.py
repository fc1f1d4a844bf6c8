"""The web app and HTTP API (FastAPI): ``create_app()``; ``catscan serve`` runs it."""

from .app import create_app
from .settings import Settings

__all__ = ["Settings", "create_app"]
