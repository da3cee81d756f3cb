"""hermes_fed.training: local LoRA training and evaluation on a tenant node (DESIGN.md §6).

A pure library: records in, records out; it never touches the event store. Modules (import
them directly; this package imports nothing, so ``hermes_fed.training.dataset`` and
``.config`` stay free of torch):

- ``tiny_model``: ``init_tiny_model(dir, "1m"|"10m")`` — a tiny Llama + local BPE tokenizer.
- ``config``: ``LoraTrainingConfig`` (validated hyper-parameters, frozen-a, DPO).
- ``dataset``: ``TrainingExample``, ``PreferenceExample``, ``examples_from_manifest``,
  ``build_dataset``, ``split_heldout``, ``length_buckets``, ``collate``.
- ``learning_rate``: ``learning_rate_at`` — warmup, then constant, cosine or linear decay.
- ``losses``: weighted SFT and DPO as pure functions.
- ``trainer``: ``train_adapter(...) -> TrainingResult``.
- ``adapter``: ``adapter_state``, ``load_adapter_state``, ``save_adapter``, ``load_adapter``,
  ``base_model_sha256``, ``frozen_a_matrix``.
- ``verifiers``: ``Verifier``, ``VerifierRegistry``, ``VERIFIERS`` (arithmetic built in).
- ``evaluation``: ``evaluate(...) -> EvalResult``.
- ``run``: ``run_training(...) -> RunOutcome`` — what ``hermes-fed node train`` calls.

Invariants T1-T5 are stated in ``dataset``, ``adapter`` and ``trainer``.
"""
