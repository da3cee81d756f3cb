"""LoRA adapters: building the peft model, frozen-A initialisation, state and file I/O.

An adapter state is a ``dict[str, np.ndarray]`` keyed by peft's state-dict names
(``...q_proj.lora_A.weight`` of shape (r, in), ``...q_proj.lora_B.weight`` of shape
(out, r)); it is what the federation exchanges. On disk an adapter is a PEFT directory
(``adapter_model.safetensors`` + ``adapter_config.json``, loadable by transformers/peft/vLLM)
plus ``hermes_manifest.json`` (base-model hash, parent version, dataset manifest hash,
training config, metrics).

Invariants
----------
T3. In frozen-a mode every LoRA A is a pure function of (frozen_a_seed, tensor name,
    shape), independent of torch/peft RNG, so every node holds the same A (FFA-LoRA:
    Sun et al., 2024, arXiv 2403.12313), and A never changes during training.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hermes_fed.errors import AdapterError
from hermes_fed.training.config import LoraTrainingConfig

ADAPTER_WEIGHTS = "adapter_model.safetensors"
MANIFEST = "hermes_manifest.json"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass(frozen=True, slots=True)
class AdapterManifest:
    """Provenance of an adapter, stored beside it as ``hermes_manifest.json``."""

    base_model_sha256: str
    parent_version: str | None = None
    dataset_manifest_sha256: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    training_config: Mapping[str, Any] = field(default_factory=dict)
    adapter_sha256: str = ""


@dataclass(frozen=True, slots=True)
class SavedAdapter:
    """An adapter read back from disk."""

    state: dict[str, np.ndarray]
    config: LoraTrainingConfig
    manifest: AdapterManifest


def resolve_device(device: str) -> str:
    """``auto`` means CUDA when a GPU is visible, else CPU."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise AdapterError("device 'cuda' was requested but no CUDA device is visible")
    return device


def base_model_sha256(base_model_dir: str | Path) -> str:
    """SHA-256 over the base model's weight files (name and bytes, in name order)."""
    root = Path(base_model_dir)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
    if not files:
        raise AdapterError(f"no weight files ({', '.join(_WEIGHT_SUFFIXES)}) under {root}")
    h = hashlib.sha256()
    for path in files:
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def state_sha256(state: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over names, shapes, dtypes and bytes of an adapter state, in name order."""
    h = hashlib.sha256()
    for name in sorted(state):
        arr = np.ascontiguousarray(state[name])
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}\0".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def frozen_a_matrix(name: str, shape: tuple[int, int], seed: int) -> np.ndarray:
    """The shared LoRA A for one tensor (invariant T3).

    Drawn from U(-1/sqrt(in), 1/sqrt(in)) — the bound of peft's default kaiming-uniform
    init with a = sqrt(5) — by a NumPy PCG64 stream keyed by sha256(seed, name).
    """
    key = hashlib.sha256(f"hermes-fed/frozen-a/{seed}/{name}".encode()).digest()
    rng = np.random.Generator(np.random.PCG64(int.from_bytes(key[:16], "big")))
    bound = 1.0 / np.sqrt(shape[1])
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


def load_base_model(base_model_dir: str | Path, device: str = "cpu") -> tuple[Any, Any]:
    """Load a base causal LM (fp32) and its tokenizer from a local directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base_model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(base_model_dir), dtype="float32")
    return model.to(device), tokenizer  # type: ignore[arg-type]


def build_peft_model(base_model: Any, config: LoraTrainingConfig) -> Any:
    """Wrap a base model with LoRA; seeds peft's init, or sets the frozen-a A (T3)."""
    import torch
    from peft import get_peft_model

    torch.manual_seed(config.seed)
    model = get_peft_model(base_model, config.to_peft())
    if config.frozen_a:
        seeded = {
            name: frozen_a_matrix(name, tuple(arr.shape), config.frozen_a_seed)
            for name, arr in adapter_state(model).items()
            if ".lora_A." in name
        }
        load_adapter_state(model, seeded, partial=True)
        for name, param in model.named_parameters():
            if "lora_A" in name:
                param.requires_grad_(False)
    return model


def load_for_config(peft_model: Any, state: Mapping[str, np.ndarray], config: LoraTrainingConfig) -> None:
    """``load_adapter_state``; in frozen-a mode a state of B factors only is accepted.

    The federation's frozen-a mode ships only B (A is the shared seed's, invariant T3);
    the model built by ``build_peft_model`` already holds that A.
    """
    missing = set(adapter_state(peft_model)) - set(state)
    partial = config.frozen_a and all(".lora_A." in name for name in missing)
    load_adapter_state(peft_model, state, partial=partial)


def adapter_state(peft_model: Any) -> dict[str, np.ndarray]:
    """The LoRA tensors of a peft model as float32 NumPy arrays, by peft state-dict name."""
    import torch
    from peft import get_peft_model_state_dict

    return {
        name: tensor.detach().to("cpu", dtype=torch.float32).numpy().copy()
        for name, tensor in get_peft_model_state_dict(peft_model).items()
    }


def load_adapter_state(peft_model: Any, state: Mapping[str, np.ndarray], *, partial: bool = False) -> None:
    """Copy an adapter state into a peft model, checking names, shapes and finiteness.

    With ``partial=False`` the state must hold exactly the model's LoRA tensors.
    """
    import torch
    from peft import set_peft_model_state_dict

    expected = {name: tuple(arr.shape) for name, arr in adapter_state(peft_model).items()}
    missing = sorted(set(expected) - set(state))
    unknown = sorted(set(state) - set(expected))
    if unknown or (missing and not partial):
        raise AdapterError(
            f"adapter does not fit the model: missing {missing[:3]}"
            f"{'...' if len(missing) > 3 else ''}, unknown {unknown[:3]}"
            f"{'...' if len(unknown) > 3 else ''}"
        )
    tensors = {}
    for name, arr in state.items():
        if tuple(arr.shape) != expected[name]:
            raise AdapterError(
                f"adapter tensor {name} has shape {tuple(arr.shape)}, the model expects {expected[name]}"
            )
        if not np.all(np.isfinite(arr)):
            raise AdapterError(f"adapter tensor {name} holds NaN or inf")
        tensors[name] = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    with torch.no_grad():
        set_peft_model_state_dict(peft_model, tensors)


def save_adapter(
    directory: str | Path,
    state: Mapping[str, np.ndarray],
    config: LoraTrainingConfig,
    manifest: AdapterManifest,
    *,
    base_model_dir: str | Path | None = None,
) -> Path:
    """Write a PEFT adapter directory plus ``hermes_manifest.json``; returns the directory.

    The manifest's ``adapter_sha256`` and ``training_config`` are filled in here.
    """
    from safetensors.numpy import save_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {name: np.ascontiguousarray(arr, dtype=np.float32) for name, arr in state.items()}
    save_file(arrays, str(out / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    base = str(Path(base_model_dir).resolve()) if base_model_dir is not None else None
    config.to_peft(base).save_pretrained(str(out))
    body = {
        "base_model_sha256": manifest.base_model_sha256,
        "parent_version": manifest.parent_version,
        "dataset_manifest_sha256": manifest.dataset_manifest_sha256,
        "metrics": {k: float(v) for k, v in manifest.metrics.items()},
        "training_config": config.to_dict(),
        "adapter_sha256": state_sha256(arrays),
    }
    (out / MANIFEST).write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    return out


def load_adapter(directory: str | Path) -> SavedAdapter:
    """Read an adapter directory written by ``save_adapter``; verifies its sha256."""
    from safetensors.numpy import load_file

    root = Path(directory)
    try:
        body = json.loads((root / MANIFEST).read_text())
        state = dict(load_file(str(root / ADAPTER_WEIGHTS)))
    except (OSError, ValueError) as exc:
        raise AdapterError(f"cannot read adapter at {root}: {exc}") from exc
    config = LoraTrainingConfig.from_dict(dict(body["training_config"]))
    manifest = AdapterManifest(
        base_model_sha256=body["base_model_sha256"],
        parent_version=body.get("parent_version"),
        dataset_manifest_sha256=body.get("dataset_manifest_sha256"),
        metrics=dict(body.get("metrics", {})),
        training_config=dict(body["training_config"]),
        adapter_sha256=body.get("adapter_sha256", ""),
    )
    if manifest.adapter_sha256 and state_sha256(state) != manifest.adapter_sha256:
        raise AdapterError(f"adapter at {root} does not match its manifest's adapter_sha256")
    return SavedAdapter(state=state, config=config, manifest=manifest)
