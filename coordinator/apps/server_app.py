"""The coordinator's Flower ServerApp: every kind of federated round, and A/B looks.

One app for plain, DP and SecAgg+ rounds (the round loop picks the strategy from the run
config, :mod:`coordinator.rounds.loop`), paired with the node's one ClientApp
(:mod:`tenant_node.flower.client_app`). Run config: :class:`coordinator.rounds.config.RoundsConfig`
(``coordinator-dir``, ``base-model``, ``rounds``, ``mode``, ``min-nodes``, the
:class:`hermes_fed.federation.RoundSettings` keys) and
:class:`coordinator.rounds.dp.PrivacySettings` (``dp``, ``dp-clip``, ..., ``secagg``). The
outcome is written to ``<coordinator-dir>/reports/run-<run id>.json`` (``status:
completed`` or ``failed``), because ``flwr run`` exits 0 even when this app raises.
A run whose settings name an ``autopilot-call`` does that one call of the coordinator's
autopilot instead (:mod:`coordinator.autopilot.grid_federation`).
"""

from __future__ import annotations

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

app = ServerApp()

REPLY_RETRY_S = 0.2
"""First retry of a reply's object the SuperLink does not hold yet (Flower's: 1 s), see
:mod:`hermes_fed.federation.object_retry`; replies are pulled every ``poll-interval``
(0.2 s) already (:mod:`coordinator.rounds.exchange`)."""


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the configured rounds (or one autopilot call, :mod:`coordinator.autopilot`);
    raise on failure so the run ends ``finished:failed``."""
    from coordinator.autopilot.grid_federation import CALL_KEY, serve_call
    from coordinator.rounds.config import merged_run_config
    from coordinator.rounds.loop import run_rounds
    from hermes_fed.errors import ConfigError
    from hermes_fed.federation.object_retry import SERVERAPP_GRID, retry_early

    retry_early(SERVERAPP_GRID, REPLY_RETRY_S)

    try:
        merged = merged_run_config(context.run_config)
    except ConfigError:
        merged = {}  # run_rounds reports the unreadable settings file in its run report
    if CALL_KEY in merged:
        serve_call(grid, merged)
        return
    run_rounds(grid, context.run_config, context.run_id)
