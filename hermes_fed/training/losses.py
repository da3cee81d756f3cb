"""Training losses as pure functions of model outputs (no model, no data loading).

The language-model head is applied only at positions that carry loss: for a causal LM the
logits are ``lm_head(hidden)``, so projecting the few assistant positions instead of every
position gives the same loss for a fraction of the head's cost.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def loss_positions(loss_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, column) of every predicting position whose target carries loss.

    Position ``t`` predicts token ``t + 1``, so target weights are ``loss_weights[:, 1:]``.
    """
    rows, cols = torch.nonzero(loss_weights[:, 1:] > 0, as_tuple=True)
    return rows, cols


def token_logprobs(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, loss_weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-probabilities of the target tokens at loss-carrying positions.

    Returns ``(logp, rows, weights)``: one entry per loss-carrying target token, its batch
    row, and its weight. Uses the decoder + output head of a Hugging Face causal LM
    (``get_decoder`` / ``get_output_embeddings``) when the model has no logit post-processing,
    else the full logits.
    """
    rows, cols = loss_positions(loss_weights)
    targets = input_ids[rows, cols + 1]
    weights = loss_weights[rows, cols + 1]
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    softcap = getattr(base.config, "final_logit_softcapping", None)
    if head is not None and softcap is None and hasattr(base, "get_decoder"):
        hidden = base.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = head(hidden[rows, cols])
    else:
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[rows, cols]
    logp = -F.cross_entropy(logits.float(), targets, reduction="none")
    return logp, rows, weights


def weighted_sft_loss(logp: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean negative log-likelihood: ``sum(w * -logp) / sum(w)``.

    Each assistant token counts with its example's tier weight (DESIGN.md §5).
    """
    return -(logp * weights).sum() / weights.sum()


def sequence_logprobs(logp: torch.Tensor, rows: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Sum of token log-probabilities per sequence (the assistant part only)."""
    return torch.zeros(batch_size, dtype=logp.dtype, device=logp.device).index_add(0, rows, logp)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Direct Preference Optimization loss (Rafailov et al., 2023, arXiv 2305.18290, eq. 7).

    ``-log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))``, averaged (optionally
    weighted) over pairs; inputs are per-sequence log-probabilities.
    """
    margin = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)
    losses = -F.logsigmoid(beta * margin)
    if weights is None:
        return losses.mean()
    return (losses * weights).sum() / weights.sum()
