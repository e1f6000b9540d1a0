"""The hand-written Llama decoding passes against the model's own forward."""

import copy

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from conftest import build_tiny_model_and_tokenizer  # noqa: E402

from agents.backends.base import GenerationParams  # noqa: E402
from agents.backends.fused_llama import (  # noqa: E402
    CACHE_STEP,
    FusedLlamaDecoder,
    fused_decoding_supported,
)
from agents.backends.transformers_backend import (  # noqa: E402
    CACHE_ARGUMENT,
    ModelPasses,
    TransformersBackend,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _passes_compared(dtype, tolerance, max_positions=None):
    """Run the same decoding passes (left-padded prompts, rows fed 1-4 tokens with padding,
    rows leaving, the cache outgrowing its first capacity) through the model's eager
    forward and through the fused decoder; the largest logit difference at fed tokens."""
    model, _ = build_tiny_model_and_tokenizer(seed=5)
    model = model.to(dtype).eval()
    model.config._attn_implementation = "eager"
    reference = copy.deepcopy(model)
    if max_positions is not None:  # positions past the model's trained length
        model.config.max_position_embeddings = max_positions
    fused = FusedLlamaDecoder(model)
    generator = torch.Generator().manual_seed(0)
    rows, prompt = 3, 12
    input_ids = torch.randint(5, 300, (rows, prompt), generator=generator)
    attention = torch.ones(rows, prompt, dtype=torch.long)
    attention[1, :4] = 0  # a shorter, left-padded prompt
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    worst = 0.0
    with torch.inference_mode():
        cache = reference(
            input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=True
        )[CACHE_ARGUMENT]
        theirs = ModelPasses(reference, cache)
        fused.start(copy.deepcopy(cache))
        next_position = positions[:, -1:] + 1
        for step in range(CACHE_STEP - 16):  # 48 passes of 1-4 tokens: past 128 columns
            # The middle row leaves (it stays in the fused cache, fed nothing), then the
            # first (the fused cache is compacted to the one row left).
            keep = {10: torch.tensor([0, 2]), 30: torch.tensor([1])}.get(step)
            if keep is not None:
                theirs.select(keep)
                fused.select(keep)
                attention, next_position = attention[keep], next_position[keep]
                assert fused.keys.shape[1] == (3 if step == 10 else 1)
            width = 1 + step % 4
            fed = torch.randint(5, 300, (attention.shape[0], width), generator=generator)
            valid = torch.ones_like(fed)
            valid[-1, 1:] = 0  # the last row is fed one token and padding
            attention = torch.cat([attention, valid], dim=1)
            feed_positions = next_position + torch.arange(width)
            expected = theirs.forward(fed, attention, feed_positions)
            got = fused.forward(fed, attention, feed_positions)
            assert got.shape == expected.shape
            difference = (got - expected.float()).abs()[valid.bool()]
            worst = max(worst, float(difference.max()))
            if width > 1:  # padding: zero logits
                assert float(got[-1, 1:].abs().max()) == 0.0
            next_position = next_position + valid.sum(1, keepdim=True)
    assert fused.keys.shape[3] > fused._capacity(prompt)  # the cache grew on the way
    if max_positions is not None:
        assert len(fused.cos) > max_positions  # the rotary tables grew on the way
    assert worst <= tolerance, worst
    return worst


def test_fused_passes_compute_the_models_logits_in_fp32():
    _passes_compared(torch.float32, 1e-4)


def test_fused_passes_compute_the_models_logits_in_bf16():
    _passes_compared(torch.bfloat16, 0.1)


def test_fused_passes_go_past_the_models_trained_length_as_transformers_does():
    _passes_compared(torch.float32, 1e-4, max_positions=16)


def test_fusing_keeps_the_model_computing_the_same():
    """The model's projections become views of the fused matrices: its forward is
    unchanged, and an in-place change of its weights reaches the fused passes."""
    model, _ = build_tiny_model_and_tokenizer(seed=5)
    model.eval()
    ids = torch.randint(5, 300, (2, 9))
    with torch.inference_mode():
        before = model(input_ids=ids).logits
    fused = FusedLlamaDecoder(model)
    with torch.inference_mode():
        after = model(input_ids=ids).logits
    assert torch.equal(before, after)
    projection = model.model.layers[0].self_attn.k_proj.weight
    with torch.no_grad():
        projection.mul_(2.0)
    q_rows = model.model.layers[0].self_attn.q_proj.weight.shape[0]
    k_rows = projection.shape[0]
    assert torch.equal(fused.layers[0][1][q_rows : q_rows + k_rows], projection)


def test_only_plain_llama_models_are_fused():
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1}
    small.update(num_attention_heads=4, num_key_value_heads=2, vocab_size=64)
    assert fused_decoding_supported(LlamaForCausalLM(LlamaConfig(**small)))
    assert not fused_decoding_supported(LlamaForCausalLM(LlamaConfig(**small, attention_bias=True)))
    assert not fused_decoding_supported(
        LlamaForCausalLM(
            LlamaConfig(**small, rope_parameters={"rope_type": "dynamic", "factor": 2.0})
        )
    )
    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=4, vocab_size=64))
    assert not fused_decoding_supported(gpt2)
    with pytest.raises(ValueError, match="not a plain Llama model"):
        FusedLlamaDecoder(gpt2)


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_the_backend_generates_the_same_with_and_without_fused_passes(temperature):
    """fp32: the fused passes sample the same texts as the model's own forward."""
    model, tokenizer = build_tiny_model_and_tokenizer(seed=3)
    fused = TransformersBackend(model, tokenizer=tokenizer, generation_dtype="float32")
    assert fused.fused_decoding
    model, tokenizer = build_tiny_model_and_tokenizer(seed=3)
    plain = TransformersBackend(
        model, tokenizer=tokenizer, generation_dtype="float32", fused_decoding=False
    )
    assert not plain.fused_decoding
    prompts = [
        [{"role": "user", "content": text}]
        for text in ("Lol. Support.", "Is this true?", "Deny it, fake news", "ok")
    ]
    params = GenerationParams(max_new_tokens=30, temperature=temperature, seed=7)
    assert [c.text for c in fused.generate(prompts, params)] == [
        c.text for c in plain.generate(prompts, params)
    ]
