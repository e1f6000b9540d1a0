"""Shared fixtures: where the real data lives, and offline settings for every test."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

# Property-based (fuzz) tests draw their cases from a fixed seed, so every run -- CI's, a
# developer's -- tries the same inputs and a failure reproduces; no example database is
# written into the checkout. `HYPOTHESIS_PROFILE=explore pytest` draws fresh cases.
settings.register_profile(
    "repeatable",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("explore", deadline=None, database=None, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def plain(value):
    """``value`` with numpy arrays and scalars as Python lists and numbers (nested dicts,
    lists and tuples too), so that whole episode traces compare with ``==``."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def shared_data_dir() -> Path:
    """``$MFLLM_DATA`` if set, else ``../shared/data`` beside the project."""
    return Path(os.environ.get("MFLLM_DATA", PROJECT_ROOT.parent / "shared" / "data"))


def require_data(*parts: str) -> Path:
    """The path under the shared data folder, or skip the test saying what is missing."""
    path = shared_data_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"real data not found at {path}; set MFLLM_DATA to the folder described in "
            "shared/data/README.md to run this test"
        )
    return path


@pytest.fixture(scope="session")
def rumoureval_dir() -> Path:
    return require_data("rumoureval2019", "rumoureval-2019-training-data")


@pytest.fixture(scope="session")
def pheme_annotations() -> Path:
    return require_data(
        "pheme_rumour_scheme_annotations", "annotations", "en-scheme-annotations.json"
    )


@pytest.fixture(scope="session")
def ced_archive() -> Path:
    return require_data("ced_weibo", "CED_Dataset.tar.xz")


@pytest.fixture(scope="session")
def ced_sample_dir() -> Path:
    return require_data("ced_weibo", "sample")


CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class ReturnsBackend:
    """A backend whose generate() returns ``make(prompts)`` (garbage included): for tests
    of what LLM components do with what a backend gives them."""

    name = "returns"

    def __init__(self, make) -> None:
        self.make = make

    def generate(self, prompts, params):
        return self.make(prompts)

    def score(self, prompts, continuations):
        raise NotImplementedError


def build_tiny_model_and_tokenizer(seed: int = 0):
    """A 2-layer Llama with 32 hidden units and a byte-level BPE tokenizer trained in
    memory, with a ChatML chat template: real transformers code paths, in milliseconds."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [
        "The police confirmed the report. I do not believe it. Is this true? Lol.",
        "User followers verified Bio Location reply post summary shares support deny query.",
        "谣言 不信 真的吗 转发 支持 否认 评论",
    ] * 20
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, pad_token="<pad>", bos_token="<|im_start|>", eos_token="<|im_end|>"
    )
    tokenizer.chat_template = CHATML
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config), tokenizer


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test (small work on two threads can run several times
    slower while anything else uses the CPU), put back afterwards."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_backend():
    """A :class:`TransformersBackend` over the tiny model (one thread: fast and stable;
    fp32 generation, so that results do not depend on whether the CPU has bf16)."""
    pytest.importorskip("transformers")
    from agents.backends.transformers_backend import TransformersBackend

    model, tokenizer = build_tiny_model_and_tokenizer()
    return TransformersBackend(
        model, tokenizer=tokenizer, threads=1, generation_dtype="float32", name="tiny-llama"
    )


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The tiny model and tokenizer saved as a model folder (for ``--model DIR``)."""
    pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("tiny-model")
    model, tokenizer = build_tiny_model_and_tokenizer()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
