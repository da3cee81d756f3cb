"""The tiny base model: offline reload, determinism, the CLI command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hermes_fed.cli import main
from hermes_fed.training.adapter import base_model_sha256
from hermes_fed.training.tiny_model import TINY_SIZES, init_tiny_model


def test_reloads_offline_with_identical_outputs(tiny_model_dir: Path) -> None:
    # Prepare: a fresh interpreter with the hub switched off computes the logits
    code = (
        "import sys, torch; from transformers import AutoModelForCausalLM, AutoTokenizer;"
        f"m = AutoModelForCausalLM.from_pretrained({str(tiny_model_dir)!r});"
        f"t = AutoTokenizer.from_pretrained({str(tiny_model_dir)!r});"
        "ids = t.apply_chat_template([{'role': 'user', 'content': 'What is 2+3?'}],"
        " add_generation_prompt=True, return_dict=True)['input_ids'];"
        "torch.save((ids, m(input_ids=torch.tensor([ids])).logits), sys.argv[1])"
    )
    out = tiny_model_dir.parent / "logits.pt"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    # Execute
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env, timeout=120)
    ids, logits = torch.load(out)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    # Assert
    assert tokenizer.decode(ids) == "<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n"
    with torch.no_grad():
        assert torch.equal(model(input_ids=torch.tensor([ids])).logits, logits)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|pad|>"
    assert model.config.model_type == "llama"
    n = sum(p.numel() for p in model.parameters())
    assert 0.5e6 < n < 2e6


def test_same_seed_same_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    again = init_tiny_model(tmp_path / "again", "1m", seed=0)
    other = init_tiny_model(tmp_path / "other", "1m", seed=1)
    assert base_model_sha256(again) == base_model_sha256(tiny_model_dir)
    assert base_model_sha256(other) != base_model_sha256(tiny_model_dir)
    assert (again / "tokenizer.json").read_bytes() == (tiny_model_dir / "tokenizer.json").read_bytes()


def test_unknown_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="size"):
        init_tiny_model(tmp_path, "100m")
    assert set(TINY_SIZES) == {"1m", "2m", "10m"}


def test_cli_init_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["model", "init-tiny", str(tmp_path / "m"), "--size", "1m", "--seed", "0"])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0
    assert printed["base_model_sha256"] == base_model_sha256(tmp_path / "m")
    assert (tmp_path / "m" / "chat_template.jinja").exists()


def test_copy_friendly_tokenizer_gives_a_value_the_same_tokens_in_text_and_json() -> None:
    # Prepare
    from hermes_fed.training.tiny_model import train_tokenizer

    plain = train_tokenizer(4096, seed=0)
    friendly = train_tokenizer(
        4096, seed=0, copy_friendly=True, texts=["What is 583 - 868?", '{"expression": "583 - 868"}'] * 3
    )
    digits = train_tokenizer(4096, seed=0, copy_friendly=True, isolate_digits=True)
    # Execute
    in_text = friendly.tokenize("What is 583 - 868?")  # type: ignore[attr-defined]
    in_json = friendly.tokenize('{"expression": "583 - 868"}')  # type: ignore[attr-defined]
    # Assert: the value's tokens are the same in both places; plain BPE glues the space on
    assert in_text[4:9] == in_json[5:10] == ["583", "Ġ", "-", "Ġ", "868"]
    assert plain.tokenize(" 583") == ["Ġ583"]  # type: ignore[attr-defined]
    assert plain.tokenize('"583')[1:] == ["583"]  # type: ignore[attr-defined]
    assert digits.tokenize("583")[:3] == ["5", "8", "3"]  # type: ignore[attr-defined]
    text = 'a  "583" 1.5\n'
    assert friendly.decode(friendly.encode(text)) == text  # type: ignore[attr-defined]
    assert "What" in friendly.get_vocab() and "calculator" not in friendly.get_vocab()  # type: ignore[attr-defined]
