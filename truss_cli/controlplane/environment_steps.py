"""What a reconciler tick changes in environments, beyond routing (docs/environments.md):

- A production that serves nothing goes to the first in line of the deployments meant to
  take it, once that one is ACTIVE (`hand_over_production`).
- A deployment pushed with `--promote` / `--environment` is promoted once it is ACTIVE
  (`promote_when_active`), as the routes promote.

Both run in the tick's thread, under its lock, on the rows the tick read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from truss_cli.controlplane import instant_promotion
from truss_cli.controlplane.builds import build_log_path
from truss_cli.controlplane.runtimes.logfile import LogFile
from truss_cli.controlplane.store import Deployment, Store, StoreError, states
from truss_cli.controlplane.store.deployments import PRODUCTION, takes_production

logger = logging.getLogger("truss.controlplane.reconciler")  # the tick's steps: the reconciler's log, as before


def hand_over_production(store: Store, deployments: list[Deployment], environments: Iterable[Any]) -> bool:
    """A production that serves nothing goes to the first in line of the deployments meant
    to take it, once that one is ACTIVE: it became ACTIVE while one before it in line was
    still on its way, which has failed since. -> whether any production changed."""
    changed = False
    for environment in environments:
        if environment.name != PRODUCTION or environment.current_deployment_id is not None:
            continue
        first = next((d for d in deployments if d.model_id == environment.model_id and takes_production(d)), None)
        if first is None or first.status != states.ACTIVE:
            continue
        try:
            claimed = store.deployments.claim_production(first.id)
        except StoreError:
            logger.exception("handing production of model %s to %s failed", environment.model_id, first.id)
            continue
        if claimed:
            changed = True
            with LogFile(build_log_path(store, first.id)) as log:
                log("serves production: the deployments before it in line failed")
    return changed


def promote_when_active(store: Store, deployment: Deployment) -> Deployment:
    """`truss push --promote` / `--environment`, once the deployment is ACTIVE: promoted as the
    routes promote (instant, or a rolling or canary promotion begun when the environment's
    settings ask for one). A promotion that cannot happen (one already under way, the
    environment deleted meanwhile) is said in the deployment's log; the deployment serves on."""
    config = deployment.config
    environment = config.get("promote_environment") or PRODUCTION
    try:
        promoted = instant_promotion.promote(store, deployment.model_id, environment, deployment.id,
                                             scale_down_previous=config.get("scale_down_previous_deployment"))
    except StoreError as exc:
        with LogFile(build_log_path(store, deployment.id)) as log:
            log(f"not promoted into {environment}: {exc}")
        return deployment
    return promoted.deployment
