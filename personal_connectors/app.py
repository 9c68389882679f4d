"""The ASGI application: routers, error envelope, request context, and the runtime lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from starlette.routing import Route

from personal_connectors.api_keys.endpoints import router as api_keys_router
from personal_connectors.apps.endpoints import router as apps_router
from personal_connectors.available.endpoints import router as catalog_router
from personal_connectors.config import API_PREFIX, Settings
from personal_connectors.connect_page.callback import router as callback_router
from personal_connectors.connect_page.endpoints import api_router as connect_api_router
from personal_connectors.connect_page.endpoints import page_router as connect_page_router
from personal_connectors.connections.endpoints import by_tool_router as tool_connections_router
from personal_connectors.connections.endpoints import router as connections_router
from personal_connectors.credentials.endpoints import router as credentials_router
from personal_connectors.end_users.endpoints import router as end_users_router
from personal_connectors.flows.endpoints import router as flows_router
from personal_connectors.health.endpoints import router as health_router
from personal_connectors.health.sampler import sampling
from personal_connectors.http.context import RequestContextMiddleware
from personal_connectors.http.docs import install_docs
from personal_connectors.http.errors import install_error_handlers
from personal_connectors.http.openapi import install_openapi, operation_id
from personal_connectors.issuers.endpoints import add_exchange_route
from personal_connectors.issuers.endpoints import router as issuers_router
from personal_connectors.logs import configure_logging
from personal_connectors.mcp_servers.endpoints import add_gateway_routes
from personal_connectors.mcp_servers.endpoints import router as mcp_router
from personal_connectors.mcp_servers.lifecycle import GatewayHolder
from personal_connectors.organizations.endpoints import router as organization_router
from personal_connectors.proxy.endpoints import PROXY_PATH, add_proxy_routes
from personal_connectors.refresher.embedded import embedded_refresher
from personal_connectors.runtime import Runtime
from personal_connectors.telemetry import metrics, tracing
from personal_connectors.tokens.endpoints import add_token_route
from personal_connectors.webhooks.endpoints import router as webhooks_router
from personal_connectors.webhooks.worker import running_worker

DESCRIPTION = """A self-hostable OAuth 2.0 connection broker.

Users connect personal accounts through OAuth; the service keeps the tokens encrypted, refreshes
them, revokes them on disconnect and hands valid access tokens to the platform's tools.
Authenticate with `X-API-Key: ak_…` or `Authorization: Bearer ak_…`."""


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or (runtime.settings if runtime else Settings())
    configure_logging(settings.log_level, settings.log_format)
    tracing.configure()  # before the runtime: its engine and client are traced when on

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = runtime is None
        app.state.runtime = runtime or Runtime.start(settings)
        refreshing = embedded_refresher(app.state.runtime)
        # Outermost, so the audit's last flush comes after the other background work stopped.
        auditing = app.state.runtime.token_audit.running(app.state.runtime.sessions)
        stamping = app.state.runtime.key_use.running(app.state.runtime.sessions)
        try:
            async with (
                auditing,
                stamping,
                refreshing,
                running_worker(app.state.runtime),
                app.state.mcp_gateway.running(),
                sampling(app.state.runtime),
            ):
                yield
        finally:
            if owned:
                await app.state.runtime.close()
            metrics.worker_stopped()
            tracing.shutdown()

    app = FastAPI(
        title="Personal Connectors",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url=None,  # install_docs: served from this service, no CDN
        redoc_url=None,
        generate_unique_id_function=operation_id,
    )
    app.state.mcp_gateway = GatewayHolder()
    install_openapi(app)
    install_error_handlers(app)
    # Each route's full path template (an included route knows only its own part), for the
    # request metric's label; filled below as routes are added.
    templates: dict[int, str] = {}
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        body_limits=[(PROXY_PATH, settings.proxy_max_body_bytes)],
        route_templates=templates,
    )

    def include(router: APIRouter, prefix: str = "") -> None:
        app.include_router(router, prefix=prefix)
        templates.update({id(route): prefix + route.path for route in router.routes})  # type: ignore[attr-defined]

    # The token route first: it is the hot path and routing tries the routes in order. No other
    # path is two segments ending in `/token`, so there is nothing for it to shadow.
    add_exchange_route(app)  # before /{connection_id}/token, which would take /oauth/token
    add_token_route(app)
    # The proxy's next, for the same reason (each included router tried before it costs a
    # match): no other path has `proxy` as its second segment under the API prefix.
    add_proxy_routes(app)
    add_gateway_routes(app)  # the MCP gateway's POSTs, busy as well; `/mcp` shadows nothing
    include(health_router)
    include(connect_page_router)  # the hosted connect page, outside the API
    # Literal paths first: `/{connection_id}` would otherwise swallow `/authorize` & co.
    for router in (
        flows_router,
        callback_router,
        connect_api_router,
        apps_router,
        api_keys_router,
        end_users_router,
        organization_router,
        catalog_router,
        tool_connections_router,
        webhooks_router,
        issuers_router,
        mcp_router,  # `/mcp`, before `/{connection_id}`
        credentials_router,
    ):
        include(router, API_PREFIX)
    include(connections_router, API_PREFIX)
    install_docs(app)  # after the API: its routes are rarely asked for
    # The application's own routes carry their full path. A plain Starlette route (the token
    # shortcut, the docs) is found by its endpoint: the router records no route for it.
    for route in app.router.routes:
        if isinstance(route, Route):
            templates.setdefault(id(route), route.path)
            templates.setdefault(id(route.endpoint), route.path)
    return app
