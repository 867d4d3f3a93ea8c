"""How an environment's requests are split between deployments (issue 11): what the routing
table gets for `/environments/{name}/` (and `/production/` for production).

No promotion under way: all to the environment's current deployment. A rolling or canary
promotion under way: `percent_traffic_to_new_version` to the candidate, the rest to the
previous deployment. A deployment with weight 0 is left out.
"""

from __future__ import annotations

from typing import Optional


def environment_split(current_deployment_id: Optional[str], candidate_deployment_id: Optional[str] = None,
                      previous_deployment_id: Optional[str] = None,
                      percent_to_candidate: int = 0) -> list[tuple[str, float]]:
    """[(deployment_id, weight)] summing to 1 (empty: the environment serves nothing yet)."""
    if candidate_deployment_id is None:
        return [(current_deployment_id, 1.0)] if current_deployment_id else []
    share = min(max(percent_to_candidate, 0), 100) / 100
    old = previous_deployment_id or current_deployment_id
    if old is None or old == candidate_deployment_id or share >= 1.0:
        return [(candidate_deployment_id, 1.0)]
    if share <= 0.0:
        return [(old, 1.0)]
    return [(old, 1.0 - share), (candidate_deployment_id, share)]
