"""The quality pipeline (DESIGN.md §5): signals -> scores -> tiers -> selection -> trigger.

Pure parts (no database, no network):

* ``config``      ``QualityConfig`` (TOML ``[quality]``) and its validated sub-sections.
* ``signals``     ``TrajectorySignals`` folded from session events; edge cases decided there.
* ``scoring``     ``implicit_score`` / ``combined_score`` with auditable terms.
* ``tiers``       ``Tier``, ``tier_of``, ``tier_weight``: half-open intervals over [-1, 1].
* ``minhash``     MinHash signatures (single and vectorised) and LSH near-duplicate removal.
* ``selection``   ``select_training_data`` -> ``SelectionManifest`` (sha256-named).
* ``preference``  ``preference_pairs``: retried-then-accepted tasks within a session.
* ``trigger``     ``AutoTrigger.decide(TriggerInputs) -> TriggerDecision``.
* ``judges``      ``Judge`` ABC, ``RuleBasedJudge``, ``AgreementJudge``;
  ``http_judge.OpenAICompatibleJudge`` for a chat/completions endpoint.

Read model and glue: ``projection`` (``QualityProjection``, ``rebuild_quality``), ``rows``,
``read_model`` (tables and queries), ``pipeline`` (judge, select, record, decide) and
``commands`` (``hermes-fed quality ...``).
"""
