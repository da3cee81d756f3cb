"""The simulator's base model: its recipe, the build, and the copy shipped in the package.

The flywheel needs a base that already knows the chat format and can copy values from the
prompt (bench/flywheel/README.md: without copying, task success stays 0). Making one is a
two-stage pre-training of the 1m tiny model on the generic corpus of
:mod:`examples.flywheel.pretrain` (no task family's tool, argument or phrasing): stage 1,
6000 steps with 30% echo dialogs, stage 2, 2000 steps with 80% (what taught copying), both
on corpus v3 (tools and keys named only in the schema, so the base learns to copy them
from the tool list). That costs about 45 minutes of one CPU core, several times the demo's
whole budget, so the package ships the result (``examples/flywheel/base_model``, 4.5 MB,
with ``pretrain.json`` naming the recipe and the losses). ``hermes-fed example build-base
DIR`` rebuilds it from the recipe; the bits may differ from the shipped copy (float sums
depend on the thread count), the behaviour does not (tests/unit/flywheel/test_base.py
checks the shipped copy).

The recipe before 2026-12-05 (2000 + 800 steps on corpus v2) made a base that echoed 12 of
48 spans and, after 400 LoRA steps on 128 goldens, solved 21% of fresh tasks (dates only);
this one echoes 46 of 48 and solves 62% (every family; bench/flywheel/README.md).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hermes_fed.errors import ConfigError

SHIPPED_BASE = Path(__file__).resolve().parent / "base_model"
RECIPE_FILE = "pretrain.json"


@dataclass(frozen=True, slots=True)
class BaseRecipe:
    """How the simulator's base is made (the defaults made the shipped copy)."""

    size: str = field(default="1m", metadata={"help": "tiny model size (1m | 2m | 10m)"})
    seed: int = field(default=0, metadata={"help": "seeds weights, tokenizer corpus and stage 1"})
    steps: int = field(default=6000, metadata={"help": "stage 1 optimizer steps"})
    lr: float = field(default=3e-3, metadata={"help": "AdamW learning rate of both stages"})
    echo: float = field(default=0.3, metadata={"help": "stage 1 share of echo dialogs"})
    copy_steps: int = field(default=2000, metadata={"help": "stage 2 steps (0: no stage 2)"})
    copy_echo: float = field(default=0.8, metadata={"help": "stage 2 share of echo dialogs"})
    corpus: int = field(default=3, metadata={"help": "generic corpus version (PretrainConfig.corpus)"})

    def __post_init__(self) -> None:
        if self.size not in ("1m", "2m", "10m"):
            raise ConfigError(f"BaseRecipe.size must be 1m, 2m or 10m, got {self.size!r}")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"BaseRecipe.steps must be an integer >= 1, got {self.steps!r}")
        if not isinstance(self.copy_steps, int) or self.copy_steps < 0:
            raise ConfigError(f"BaseRecipe.copy_steps must be an integer >= 0, got {self.copy_steps!r}")

    def stages(self) -> list[Any]:
        """The :class:`PretrainConfig` of each stage, in order."""
        from examples.flywheel.pretrain import PretrainConfig

        first = PretrainConfig(steps=self.steps, lr=self.lr, echo=self.echo, seed=self.seed,
                               corpus=self.corpus)
        if self.copy_steps == 0:
            return [first]
        return [first, PretrainConfig(steps=self.copy_steps, lr=self.lr, echo=self.copy_echo,
                                      seed=self.seed + 2, corpus=self.corpus)]


def build_base(out_dir: str | Path, recipe: BaseRecipe | None = None,
               say: Callable[[str], None] = print) -> dict[str, Any]:
    """Build a base by ``recipe`` into ``out_dir`` (written last, so a crash leaves none).

    Returns what ``pretrain.json`` holds: the recipe and each stage's losses and seconds.
    """
    from examples.flywheel.pretrain import init_sim_base, pretrain_base

    recipe = recipe or BaseRecipe()
    out = Path(out_dir)
    if (out / "config.json").exists():
        raise ConfigError(f"{out} already holds a model; choose an empty directory")
    info: dict[str, Any] = {"recipe": asdict(recipe), "stages": []}
    with tempfile.TemporaryDirectory(prefix="hermes-base-", dir=out.parent if out.parent.exists()
                                     else None) as scratch:
        current = init_sim_base(Path(scratch) / "random", recipe.size, seed=recipe.seed,
                                corpus=recipe.corpus)
        stages = recipe.stages()
        for i, stage in enumerate(stages, start=1):
            say(f"base: stage {i}/{len(stages)}: {stage.steps} steps, {stage.echo:.0%} echo dialogs")
            target = Path(scratch) / f"stage{i}"
            stats = pretrain_base(current, target, stage)
            say(f"  loss {stats['loss_first']:.2f} -> {stats['loss_last']:.2f} in {stats['seconds']:.0f}s")
            info["stages"].append({**asdict(stage), **stats})
            current = target
        (current / RECIPE_FILE).write_text(json.dumps(info, indent=2) + "\n")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(current, out, dirs_exist_ok=True)
    return info


def probe_copying(model_dir: str | Path, n: int = 48, seed: int = 4242,
                  call_seed: int = 999) -> dict[str, int]:
    """What a base brings to the flywheel: three greedy probes on fresh generic dialogs.

    ``echo_exact``: "Repeat after me: <span>" answered with exactly the span;
    ``call_name`` / ``call_exact``: a generic tool request answered with a call naming the
    schema's tool / also copying every argument value; ``final_states_result``: given the
    call and the tool's result, the reply states the result. None of it touches the task
    families (bench/flywheel/probe_copy.py prints it for any base).
    """
    import random

    from examples.flywheel.agent import AgentConfig, LocalAgent, ToolCall, parse_tool_call
    from examples.flywheel.pretrain import echo_trajectory, generic_corpus

    agent = LocalAgent(model_dir, None, None, AgentConfig(temperature=0.0, max_call_tokens=80))
    rng = random.Random(seed)
    echoes = [echo_trajectory(rng, i) for i in range(n)]
    outs = agent.generate([agent.prompt_ids(d["messages"][:2], []) for d in echoes], 48, 0)
    echo_ok = sum(o == d["final_response"] for d, o in zip(echoes, outs, strict=True))
    docs = list(generic_corpus(n, call_seed, 2, 0.0))
    outs = agent.generate([agent.prompt_ids(d["messages"][:2], d["tools"]) for d in docs], 80, 0)
    exact = name = 0
    for d, o in zip(docs, outs, strict=True):
        call, gold = parse_tool_call(o), d["messages"][2]["tool_calls"][0]
        if isinstance(call, ToolCall):
            name += call.name == gold["name"]
            exact += call.name == gold["name"] and call.arguments == gold["arguments"]
    outs = agent.generate([agent.prompt_ids(d["messages"][:4], d["tools"]) for d in docs], 40, 0)
    final = sum(str(json.loads(d["messages"][3]["content"])["result"]) in o
                for d, o in zip(docs, outs, strict=True))
    return {"n": n, "echo_exact": echo_ok, "call_name": name, "call_exact": exact,
            "final_states_result": final}


def shipped_base() -> Path:
    """The packaged base model directory (ConfigError naming the rebuild command if absent)."""
    if not (SHIPPED_BASE / "config.json").is_file():
        raise ConfigError(
            f"the packaged base model is missing at {SHIPPED_BASE}; rebuild it with "
            f"`hermes-fed example build-base {SHIPPED_BASE}` (about 45 CPU minutes)"
        )
    return SHIPPED_BASE


def base_recipe_of(model_dir: str | Path) -> dict[str, Any] | None:
    """The ``pretrain.json`` of a base built by :func:`build_base`, if it has one."""
    path = Path(model_dir) / RECIPE_FILE
    if not path.is_file():
        return None
    body: dict[str, Any] = json.loads(path.read_text())
    return body
