"""The dashboard served at ``/ui`` (see docs/ui.md).

Plain HTML, JavaScript and CSS shipped inside the package: no separate server and no build
step. The page holds no data of its own; it reads the ``/v1`` API with the token the user
logs in with, so it sees exactly what that token may see and nothing more.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["STATIC_DIR", "mount_ui", "router"]

STATIC_DIR = Path(__file__).parent / "static"

router = APIRouter(include_in_schema=False)


@router.get("/ui")
async def ui_root() -> RedirectResponse:
    """``/ui`` and ``/ui/`` open the same page (relative asset paths need the slash)."""
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/")
async def ui_index() -> FileResponse:
    """The single page; everything else it shows comes from ``/v1`` with the user's token."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


def mount_ui(app: FastAPI) -> None:
    """Add the page and its static assets (``/ui/static/...``) to ``app``."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")
