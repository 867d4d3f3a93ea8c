"""The management API, one module per resource; `all_routers` is what the app includes."""

from truss_cli.controlplane.routes import (
    api_keys, archives, autoscaling, blobs, deployments, logs, models, patches, secrets, server, usage,
)

all_routers = [server.router, blobs.router, archives.router, models.router, models.readable, deployments.router,
               patches.router, logs.router, api_keys.router, secrets.router, usage.router,
               autoscaling.router]
