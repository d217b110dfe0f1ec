"""What the reconciler asks Temporal before it changes a worker's Lua, and before it forgets old code.

- ``check``: would the running executions that move to the new bundle's code
  (``auto_upgrade`` ones, and those started without a code pin) replay on it?
  A bounded sample per changed workflow type, newest first
  (``moontide.workflows.check_rollout``). On divergence the reconciler keeps the
  previous bundle serving (``ReplayDivergence``).
- ``codes_in_use``: the code digests open executions on a worker's task queue
  are pinned to; the code history drops no other version before Temporal says so.

The Temporal client comes from the Spawner (one per TemporalClient spec, its
secrets read from the API); ``moontide.workflows`` (lupa, the Temporal
worker's replayer) loads on the first check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..entries import App

if TYPE_CHECKING:
    from ..workflows import RolloutCheck

__all__ = ["Rollouts"]

#: ``client_of(namespace, client_spec)`` -> a connected Temporal client.
ClientOf = Callable[[str, Mapping[str, Any]], Awaitable[Any]]


class Rollouts:
    """The two questions, asked through one Temporal client per TemporalClient spec."""

    def __init__(self, client_of: ClientOf, *, sample: int) -> None:
        self.client_of = client_of
        #: Executions replayed per changed workflow type; 0 turns the check off.
        self.sample = sample

    async def check(self, namespace: str, client_spec: Mapping[str, Any] | None, old_app: App | None,
                    new_app: App, worker_id: str) -> RolloutCheck:
        """What the running executions ``old_app`` runs that would move to ``new_app``'s code make of it."""
        from ..workflows import RolloutCheck, changed_workflows, check_rollout

        # no workflow code changed (a function, a library no workflow imports): Temporal is not asked
        if self.sample <= 0 or old_app is None or not changed_workflows(old_app, new_app, worker_id):
            return RolloutCheck()
        client = await self.client_of(namespace, client_spec or {})
        return await check_rollout(client, old_app, new_app, worker_id, sample=self.sample)

    async def codes_in_use(self, namespace: str, client_spec: Mapping[str, Any] | None, app: App,
                           worker_id: str) -> set[str]:
        from ..workflows import codes_in_use

        client = await self.client_of(namespace, client_spec or {})
        return await codes_in_use(client, app, worker_id)
