"""Real model servers for tests and benches: vLLM's CPU build, and adapters to load into it.

Tests import these helpers; benches too (they put the repository root on ``sys.path``).
vLLM runs from its own virtualenv (``scripts/vllm_venv.sh``), one server per test module:
it takes 30-80 s to start on 2 shared cores and ~3 GB of RSS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hermes_fed.serving.vllm_process import VllmServer, VllmServerConfig, default_vllm_venv

ROOT = Path(__file__).resolve().parents[1]
# The simulator's pre-trained 1m Llama base (3.9 MB, its chat template knows tool calls).
PACKAGED_BASE = ROOT / "examples" / "flywheel" / "base_model"
BASE_SERVED_NAME = "base"


def packaged_base_model() -> Path:
    """The directory of the packaged base model."""
    if not (PACKAGED_BASE / "config.json").is_file():
        raise FileNotFoundError(f"no packaged base model in {PACKAGED_BASE}")
    return PACKAGED_BASE


def vllm_venv_problem() -> str | None:
    """Why vLLM cannot run here (None when its virtualenv is in place)."""
    venv = default_vllm_venv()
    if not (venv / "bin" / "python").is_file():
        return (f"the vLLM virtualenv {venv} is missing: run scripts/vllm_venv.sh "
                "(the README's test command does)")
    if not (venv / ".hermes-fed-vllm-installed").is_file():
        return f"the vLLM virtualenv {venv} is incomplete: run scripts/vllm_venv.sh again"
    return None


def vllm_server(model_dir: Path, log_path: Path, **config: object) -> VllmServer:
    """A (not yet started) vLLM server for ``model_dir`` with the test defaults.

    The defaults are VllmServerConfig's (LoRA rank <= 16, 2 adapters a batch, float32,
    512 tokens, 1 GiB KV cache, one thread) and the base served as ``base``.
    """
    settings: dict[str, object] = {"served_model_name": BASE_SERVED_NAME, **config}
    return VllmServer(VllmServerConfig(model=str(model_dir), **settings),  # type: ignore[arg-type]
                      log_path=log_path)


@dataclass(frozen=True, slots=True)
class TestAdapter:
    """A PEFT adapter on disk and the versioned name it is served under."""

    __test__ = False  # not a pytest test class

    name: str
    path: Path
    state: dict[str, np.ndarray]


def write_test_adapter(directory: Path, base_model_dir: Path, *, seed: int = 0, r: int = 8,
                       b_scale: float = 0.1, version: int = 1) -> TestAdapter:
    """Write an adapter the way the coordinator's registry does, with a non-zero B.

    A freshly initialised LoRA has B = 0 (it changes nothing), so B is drawn from
    N(0, ``b_scale``) with ``seed``; A is peft's seeded init. The files are written by
    ``hermes_fed.training.adapter.save_adapter`` with the base's path, as
    ``AdapterRegistry.publish`` writes them; the name is the registry's ``v<n>-<sha12>``.
    """
    from hermes_fed.training.adapter import (
        AdapterManifest,
        adapter_state,
        base_model_sha256,
        build_peft_model,
        load_base_model,
        save_adapter,
        state_sha256,
    )
    from hermes_fed.training.config import LoraTrainingConfig

    config = LoraTrainingConfig(r=r, alpha=2.0 * r, seed=seed, device="cpu")
    model, _ = load_base_model(base_model_dir)
    state = adapter_state(build_peft_model(model, config))
    rng = np.random.default_rng(seed)
    for name in sorted(state):
        if ".lora_B." in name:
            state[name] = rng.normal(0.0, b_scale, state[name].shape).astype(np.float32)
    name = f"v{version}-{state_sha256(state)[:12]}"
    manifest = AdapterManifest(base_model_sha256=base_model_sha256(base_model_dir))
    path = save_adapter(directory / name, state, config, manifest, base_model_dir=base_model_dir)
    return TestAdapter(name=name, path=path, state=state)
