"""The web app and HTTP API (FastAPI): ``create_app()``; ``catscan serve`` runs it."""

from .app import Settings, create_app

__all__ = ["Settings", "create_app"]
