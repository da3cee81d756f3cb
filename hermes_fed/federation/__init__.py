"""The federation's wire contract: what the coordinator and the nodes say to each other.

Both apps import this package and never each other (DESIGN.md §2, §7):

- ``messages``: message types, record names, reply keys, reply readers;
- ``settings``: :class:`RoundSettings`, the training settings of a round and their defaults;
- ``round_spec``: :class:`RoundSpec`, the ``config`` of ``train`` / ``evaluate``;
- ``queries``: :class:`AbQuery`, the ``config`` of ``query.ab_stats``;
- ``delivery``: ``query.trigger`` and ``deploy`` (the autopilot's readiness and delivery);
- ``cells``: :class:`Cell`, the mergeable statistics a node may report;
- ``node_settings``: :class:`NodeSettings`, a SuperNode's ``--node-config``;
- ``reasons``: reason codes of a node's failures (no data in them);
- ``processes``: starting and stopping Flower processes on loopback.
"""
