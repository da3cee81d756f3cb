"""The coordinator's Flower ServerApp: federated LoRA rounds (see ``coordinator.rounds.loop``).

Run config (``[tool.flwr.app.config]`` plus ``flwr run -c``): ``coordinator-dir``,
``base-model``, ``num-server-rounds``, ``mode`` (fedavg | exact | frozen-a), ``min-nodes``
and the LoRA/training knobs of :class:`coordinator.rounds.loop.RoundsConfig`. The outcome is
written to ``<coordinator-dir>/reports/run-<run id>.json`` (``status: completed`` or
``failed``), because ``flwr run`` exits 0 even when this app raises.
"""

from __future__ import annotations

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the configured rounds; raise on failure so the run ends ``finished:failed``."""
    from coordinator.rounds.loop import run_rounds

    run_rounds(grid, context.run_config, context.run_id)
