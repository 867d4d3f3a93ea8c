"""The management API, one module per resource; `all_routers` is what the app includes."""

from truss_cli.controlplane.routes import (
    api_keys, archives, autoscaling, blobs, deployments, environments, logs, metrics, models, patches, promotions,
    secrets, server, usage, wake,
)

all_routers = [server.router, blobs.router, archives.router, models.router, models.readable, deployments.router,
               environments.router, promotions.router, autoscaling.router, patches.router, logs.router,
               api_keys.router, secrets.router, usage.router, metrics.router, wake.router]
