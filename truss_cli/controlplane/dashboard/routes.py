"""What the app mounts for the dashboard, and the session cookies' signer it keeps."""

from __future__ import annotations

from typing import Any

from truss_cli.controlplane.dashboard import (deployments_page, development_page, environments_page, logs_page,
                                              metrics_page, model_page, pages, sign_in, static_files)
from truss_cli.controlplane.session_cookies import SessionCookies
from truss_cli.controlplane.store import Store

routers = [pages.router, sign_in.router, static_files.router, model_page.router, deployments_page.router,
           environments_page.router, logs_page.router, metrics_page.router, development_page.router]


def install(api: Any, store: Store) -> None:
    api.state.session_cookies = SessionCookies.for_store(store)
    for router in routers:
        api.include_router(router)
