"""The local transformers backend, on a tiny config-built Llama (milliseconds per call)."""

from __future__ import annotations

import pytest

from agents.backends.base import GenerationParams
from agents.backends.transformers_backend import TransformersBackend, prefix_groups

SHARED = (
    "The police confirmed the report. I do not believe it. Is this true? "
    "User followers verified Bio Location reply post summary shares."
)
PROMPTS = [
    [{"role": "system", "content": SHARED}, {"role": "user", "content": "Is this true?"}],
    [{"role": "system", "content": SHARED}, {"role": "user", "content": "Lol. Support."}],
    [{"role": "user", "content": "谣言 不信 真的吗"}],
]


def test_one_completion_per_prompt_with_token_counts(tiny_backend):
    completions = tiny_backend.generate(PROMPTS, GenerationParams(max_new_tokens=7))
    assert len(completions) == len(PROMPTS)
    rendered = [tiny_backend.render(p) for p in PROMPTS]
    for completion, text in zip(completions, rendered, strict=True):
        assert completion.error is None
        assert completion.prompt_tokens == len(tiny_backend.tokenizer(text)["input_ids"])
        assert 0 <= completion.completion_tokens <= 7


def test_same_seed_same_samples_other_seed_other_samples(tiny_backend):
    params = GenerationParams(max_new_tokens=12, temperature=1.0, seed=3)
    first = [c.text for c in tiny_backend.generate(PROMPTS, params)]
    again = [c.text for c in tiny_backend.generate(PROMPTS, params)]
    other = [
        c.text
        for c in tiny_backend.generate(PROMPTS, GenerationParams(12, temperature=1.0, seed=4))
    ]
    assert first == again
    assert first != other


def test_shared_prefixes_give_the_same_greedy_tokens(tiny_backend):
    params = GenerationParams(max_new_tokens=10, temperature=0)
    prompts = PROMPTS * 3
    tiny_backend.share_prefixes = False
    try:
        plain = tiny_backend.generate(prompts, params)
    finally:
        tiny_backend.share_prefixes = True
    shared = tiny_backend.generate(prompts, params)
    assert [c.text for c in shared] == [c.text for c in plain]
    assert [c.completion_tokens for c in shared] == [c.completion_tokens for c in plain]


def test_prefix_groups_split_episodes_and_keep_a_token_per_row():
    episode_a = list(range(100, 140))
    episode_b = list(range(200, 240))
    rows = [
        [*episode_a, 1, 2],
        [*episode_b, 3],
        [*episode_a, 4],
        [*episode_b, 5, 6],
        [*episode_a],
    ]
    groups = prefix_groups(rows)
    assert groups is not None
    grouped = {tuple(sorted(g)): length for length, g in groups}
    assert grouped == {(0, 2, 4): 39, (1, 3): 40}  # row 4 keeps its last token
    assert prefix_groups([[1, 2, 3], [4, 5, 6]]) is None  # nothing worth sharing


def test_stop_string_cuts_the_completion(tiny_backend):
    params = GenerationParams(max_new_tokens=20, temperature=0)
    (free,) = tiny_backend.generate(PROMPTS[:1], params)
    assert len(free.text) > 4
    stop = free.text[3:5]
    (stopped,) = tiny_backend.generate(
        PROMPTS[:1], GenerationParams(max_new_tokens=20, temperature=0, stop=(stop,))
    )
    assert stopped.text == free.text.split(stop, 1)[0]


def test_scores_do_not_depend_on_the_batch(tiny_backend):
    continuations = ["I do not believe it.", "Lol", "不信"]
    batched = tiny_backend.score(PROMPTS, continuations)
    for prompt, text, score in zip(PROMPTS, continuations, batched, strict=True):
        (alone,) = tiny_backend.score([prompt], [text])
        assert alone.tokens == score.tokens > 0
        assert alone.logprob == pytest.approx(score.logprob, abs=1e-4)
        assert all(lp <= 0 for lp in score.token_logprobs)
    (empty,) = tiny_backend.score(PROMPTS[:1], [""])
    assert empty.tokens == 0 and empty.logprob == 0.0
    with pytest.raises(ValueError, match="continuations"):
        tiny_backend.score(PROMPTS, ["one"])


def test_model_folder_and_adapter(tmp_path):
    """A saved folder loads by path; a PEFT adapter changes the model's scores."""
    from peft import LoraConfig, get_peft_model

    from tests.conftest import build_tiny_model_and_tokenizer

    model, tokenizer = build_tiny_model_and_tokenizer()
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(tmp_path / "adapter")

    base = TransformersBackend(tmp_path / "model", threads=1)
    tuned = TransformersBackend(tmp_path / "model", adapter=tmp_path / "adapter", threads=1)
    assert tuned.name.endswith("+adapter")
    (plain,) = base.score(PROMPTS[:1], ["I do not believe it."])
    (adapted,) = tuned.score(PROMPTS[:1], ["I do not believe it."])
    assert plain.logprob != pytest.approx(adapted.logprob, abs=1e-3)
    with pytest.raises(FileNotFoundError, match="not a PEFT adapter"):
        TransformersBackend(tmp_path / "model", adapter=tmp_path / "model")


def test_unknown_hub_id_says_it_needs_the_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE"):
        TransformersBackend("no-such-org/no-such-model-anywhere")


def test_bad_arguments():
    from tests.conftest import build_tiny_model_and_tokenizer

    model, tokenizer = build_tiny_model_and_tokenizer()
    with pytest.raises(ValueError, match="tokenizer"):
        TransformersBackend(model)
    with pytest.raises(ValueError, match="batch_size"):
        TransformersBackend(model, tokenizer=tokenizer, batch_size=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        GenerationParams(max_new_tokens=0)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"max_new_tokens": 2.5}, "max_new_tokens must be an integer >= 1, got 2.5"),
        ({"max_new_tokens": float("nan")}, "max_new_tokens must be an integer >= 1, got nan"),
        ({"temperature": float("nan")}, "temperature must be a finite number >= 0, got nan"),
        ({"temperature": float("inf")}, "temperature must be a finite number >= 0, got inf"),
        ({"temperature": "0.7"}, "temperature must be a finite number >= 0, got '0.7'"),
        ({"top_p": float("nan")}, r"top_p must be in \(0, 1\], got nan"),
        ({"seed": -1}, "seed must be an integer >= 0, got -1"),
        ({"seed": 1.5}, "seed must be an integer >= 0, got 1.5"),
    ],
)
def test_bad_generation_parameters_are_refused_before_any_model_runs(arguments, message):
    """NaN or a float where a count belongs once passed the checks and broke sampling (or
    the HTTP request) in the middle of a run."""
    with pytest.raises(ValueError, match=message):
        GenerationParams(**arguments)


def test_sampler_keeps_to_top_k_and_top_p():
    import torch

    from agents.backends.transformers_backend import RowSampler

    logits = torch.log(torch.tensor([[0.05, 0.6, 0.3, 0.05] + [1e-6] * 60]))
    draws = lambda sampler: {  # noqa: E731
        int(sampler.pick(logits, [0])) for _ in range(200)
    }  # one sampler, 200 draws from its generator
    assert draws(RowSampler(1.0, top_p=0.5, seeds=[0])) == {1}  # 0.6 alone reaches 0.5
    assert draws(RowSampler(1.0, top_p=0.85, seeds=[0])) == {1, 2}
    assert draws(RowSampler(1.0, top_p=1.0, top_k=1, seeds=[0])) == {1}
    assert draws(RowSampler(1.0, top_p=1.0, top_k=4, seeds=[0])) == {0, 1, 2, 3}
    # Each row draws from its own prompt's generator, whichever batch row it sits in.
    two = RowSampler(1.0, top_p=1.0, top_k=4, seeds=[5, 6])
    alone = RowSampler(1.0, top_p=1.0, top_k=4, seeds=[5, 6])
    both = [two.pick(logits.repeat(2, 1), [0, 1]).tolist() for _ in range(20)]
    second = [alone.pick(logits, [1]).tolist() for _ in range(20)]
    assert [pair[1] for pair in both] == [row[0] for row in second]


def test_a_prompt_samples_the_same_alone_or_in_a_batch(tiny_backend):
    params = GenerationParams(max_new_tokens=12, temperature=1.0, seed=9)
    batch = tiny_backend.generate(PROMPTS, params)
    for prompt, completion in zip(PROMPTS, batch, strict=True):
        (alone,) = tiny_backend.generate([prompt], params)
        assert alone.text == completion.text
    twice = tiny_backend.generate([PROMPTS[0], PROMPTS[0]], params)
    assert twice[0].text == batch[0].text and twice[1].text != twice[0].text


@pytest.mark.parametrize(
    ("prompts", "error", "message"),
    [
        ([[{"role": "user", "content": "a\ud800b"}]], ValueError, "prompt 0 message 0 must be"),
        ([[{"role": "user", "content": None}]], ValueError, "prompt 0 message 0 must be"),
        ([[{"role": "user"}]], ValueError, "prompt 0 message 0 must be a .'role': str,"),
        ([PROMPTS[0], []], TypeError, "prompt 1 must be a non-empty list of chat messages"),
        (["hi"], TypeError, "prompt 0 must be a non-empty list of chat messages, got 'hi'"),
        ("hi", TypeError, "prompts must be a list of prompts, got str"),
    ],
)
def test_prompts_that_are_not_chat_messages_are_named(tiny_backend, prompts, error, message):
    """A lone surrogate or a non-list failed inside the tokenizer; a None content was
    rendered as if it were a text."""
    with pytest.raises(error, match=message):
        tiny_backend.generate(prompts, GenerationParams(max_new_tokens=2))
    with pytest.raises(error, match=message):
        tiny_backend.score(prompts, ["yes"] * len(prompts))


def test_empty_batches_and_bad_continuations(tiny_backend):
    assert tiny_backend.generate([], GenerationParams()) == []  # was an IndexError
    assert tiny_backend.score([], []) == []
    with pytest.raises(ValueError, match="continuation 0 must be a str writable as UTF-8"):
        tiny_backend.score(PROMPTS[:1], ["\ud800"])
    with pytest.raises(TypeError, match="params must be GenerationParams, got NoneType"):
        tiny_backend.generate(PROMPTS, None)


@pytest.mark.parametrize(
    ("stop", "error", "message"),
    [
        ("ab", TypeError, "stop must be a tuple of stop strings, got 'ab'"),  # stopped at a, b
        (("",), ValueError, "stop strings must be non-empty str"),  # 'empty separator'
        ((None,), ValueError, "stop strings must be non-empty str"),
    ],
)
def test_stop_strings_are_checked(stop, error, message):
    with pytest.raises(error, match=message):
        GenerationParams(stop=stop)
    assert GenerationParams(stop=["\n"]).stop == ("\n",)  # a list is kept, hashable


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"max_prompt_tokens": -1}, "max_prompt_tokens must be an integer >= 1"),  # kept 1 token
        ({"batch_size": 1.5}, "batch_size must be an integer >= 1"),
        ({"threads": 1.5}, "threads must be an integer >= 1"),
    ],
)
def test_backend_options_are_counts(tiny_backend, option, message):
    with pytest.raises(ValueError, match=message):
        TransformersBackend(tiny_backend.model, tokenizer=tiny_backend.tokenizer, **option)
    with pytest.raises(TypeError, match="model must be a folder, a hub id or a model, got None"):
        TransformersBackend(None, tokenizer=tiny_backend.tokenizer)


def _forward_calls(backend, run):
    """How many forward passes ``run()`` makes on ``backend``'s generation model (its
    own forward for prompts, the fused decoder's for decoding passes)."""
    calls = []
    handle = backend._generator.register_forward_hook(lambda *_: calls.append(1))
    fused = backend._fused
    if fused is not None:
        forward = fused.forward
        fused.forward = lambda *args: calls.append(1) or forward(*args)
    try:
        run()
    finally:
        handle.remove()
        if fused is not None:
            del fused.forward
    return len(calls)


def test_drafts_from_the_context_leave_greedy_output_unchanged():
    """Greedy decoding keeps a draft token only where it is the argmax: the text is the
    same with and without drafts, in fewer forward passes (this tiny model falls into a
    loop on this prompt, which drafts predict)."""
    from conftest import build_tiny_model_and_tokenizer

    model, tokenizer = build_tiny_model_and_tokenizer(seed=3)
    backend = TransformersBackend(model, tokenizer=tokenizer, generation_dtype="float32")
    params = GenerationParams(max_new_tokens=40, temperature=0)
    prompt = [{"role": "user", "content": "Lol. Support."}]
    backend.draft_tokens = 0
    plain_calls = _forward_calls(backend, lambda: backend.generate([prompt], params))
    (plain,) = backend.generate([prompt], params)
    plain_batch = backend.generate([prompt, *PROMPTS], params)
    backend.draft_tokens = 8
    drafted_calls = _forward_calls(backend, lambda: backend.generate([prompt], params))
    (drafted,) = backend.generate([prompt], params)
    assert (drafted.text, drafted.completion_tokens) == (plain.text, plain.completion_tokens)
    assert plain.completion_tokens == 40
    assert drafted_calls < plain_calls / 2
    # In a batch, rows keep different numbers of draft tokens (the refused ones masked).
    drafted_batch = backend.generate([prompt, *PROMPTS], params)
    assert [c.text for c in drafted_batch] == [c.text for c in plain_batch]
    assert drafted_batch[0].text == plain.text


def test_draft_lookup_takes_the_latest_earlier_occurrence():
    from agents.backends.transformers_backend import draft_from_context

    context = [1, 2, 3, 4, 5, 9, 1, 2, 3, 6, 7, 1, 2, 3]
    assert draft_from_context(context, 2) == [6, 7]  # after the latest earlier [1, 2, 3]
    assert draft_from_context(context, 7) == [6, 7, 1, 2, 3, 6, 7]  # and periodically on
    assert draft_from_context([8, 2, 3, 5, 1, 2, 3], 4) == [5, 1, 2, 3]  # 2-token match
    assert draft_from_context([4, 4, 4, 4], 3) == [4, 4, 4]  # a run goes on
    assert draft_from_context([1, 2, 3, 4], 5) == []  # nothing repeats
    assert draft_from_context(context, 0) == []


def test_speculative_sampling_draws_from_the_sampling_distribution():
    """A draft token kept with its probability, else a draw without it: every token's
    frequency matches the top-k/top-p distribution, whichever token is drafted."""
    import torch

    from agents.backends.transformers_backend import RowSampler

    logits = torch.log(torch.tensor([0.4, 0.3, 0.2, 0.06, 0.04] + [1e-9] * 20))
    draws = 4000
    for top_p, draft in ((1.0, 0), (1.0, 3), (0.8, 1), (0.8, 4)):
        sampler = RowSampler(1.0, top_p, seeds=list(range(draws)))
        probs, ids = sampler.distribution(logits[None])
        expected = torch.zeros(len(logits)).scatter(0, ids[0], probs[0] / probs[0].sum())
        counts = torch.zeros(len(logits))
        for row in range(draws):
            kept, token = sampler.verify(logits, draft, row)
            counts[draft if kept else token] += 1
            assert kept == (token == draft)
        assert (counts / draws - expected).abs().max() < 0.025, (top_p, draft, counts)
        assert counts[expected == 0].sum() == 0  # nothing outside top-p is ever drawn


def test_rows_end_at_their_first_line_when_asked(tiny_backend):
    """``until_first_line``: each completion stops once its first non-empty line is
    complete, and its first line is what it would have been."""
    from agents.backends.base import first_line_complete
    from agents.prompts import clean_action

    prompts = PROMPTS * 4
    full = GenerationParams(max_new_tokens=48, temperature=1.0, seed=2)
    whole = tiny_backend.generate(prompts, full)
    cut = tiny_backend.generate(prompts, GenerationParams(48, 1.0, seed=2, until_first_line=True))
    assert any(first_line_complete(c.text) for c in whole)  # the hint has work to do
    for long, short in zip(whole, cut, strict=True):
        assert clean_action(short.text) == clean_action(long.text)
        assert long.text.startswith(short.text)
        if first_line_complete(long.text):
            assert short.completion_tokens < long.completion_tokens or not short.text.strip()
            assert first_line_complete(short.text)


def test_generation_in_bf16_keeps_scores_in_fp32():
    import torch
    from conftest import build_tiny_model_and_tokenizer

    model, tokenizer = build_tiny_model_and_tokenizer()
    backend = TransformersBackend(model, tokenizer=tokenizer, generation_dtype="bfloat16")
    assert backend.generation_dtype == "bfloat16" and backend.model.dtype == torch.float32
    plain = TransformersBackend(model, tokenizer=tokenizer, generation_dtype="float32")
    assert plain.generation_dtype == "float32" and plain._generator is plain.model
    (completion,) = backend.generate(PROMPTS[:1], GenerationParams(max_new_tokens=8, seed=1))
    assert completion.error is None and completion.completion_tokens > 0
    scores = [backend.score(PROMPTS, ["Is it?"] * 3), plain.score(PROMPTS, ["Is it?"] * 3)]
    assert [s.tokens for s in scores[0]] == [s.tokens for s in scores[1]]
    assert [s.logprob for s in scores[0]] == [s.logprob for s in scores[1]]
    with pytest.raises(ValueError, match="generation_dtype must be one of"):
        TransformersBackend(model, tokenizer=tokenizer, generation_dtype="fp16")
    with pytest.raises(ValueError, match="needs an fp32 model"):
        TransformersBackend(
            model.to(torch.bfloat16), tokenizer=tokenizer, generation_dtype="float32"
        )
    with pytest.raises(TypeError, match="until_first_line must be True or False"):
        GenerationParams(until_first_line="yes")


def test_every_bf16_call_computes_as_the_first():
    """A bf16 generator decodes with eager attention: it must be put back to the prompt
    attention after a call, or the next call's shared prefixes ran the other kernel and a
    second call sampled other text than the first (the first call after loading differed
    from all later ones)."""
    from conftest import build_tiny_model_and_tokenizer

    model, tokenizer = build_tiny_model_and_tokenizer()

    def bf16_backend():
        return TransformersBackend(
            model, tokenizer=tokenizer, threads=1, generation_dtype="bfloat16"
        )

    params = GenerationParams(max_new_tokens=12, temperature=1.0, seed=5)
    prompts = PROMPTS * 4  # rows that share prefixes
    backend = bf16_backend()
    prompt_attention = backend._generator.config._attn_implementation
    calls = [[c.text for c in backend.generate(prompts, params)] for _ in range(3)]
    assert backend._generator.config._attn_implementation == prompt_attention
    assert calls[1] == calls[0] and calls[2] == calls[0]
    assert [c.text for c in bf16_backend().generate(prompts, params)] == calls[0]


def test_scores_with_shared_prefixes_equal_plain_scores(tiny_backend):
    """Scoring runs each group's common prompt prefix once: the same log-probabilities as
    scoring every row whole (up to float rounding), empty continuations included."""
    prompts = PROMPTS * 3
    continuations = ["Is this true?", "Lol.", "", "不信", "Support. Support.", "deny", *"abc"]
    shared = tiny_backend.score(prompts, continuations)
    tiny_backend.share_prefixes = False
    try:
        plain = tiny_backend.score(prompts, continuations)
    finally:
        tiny_backend.share_prefixes = True
    assert [s.tokens for s in shared] == [s.tokens for s in plain]
    assert shared[2].tokens == 0
    for a, b in zip(shared, plain, strict=True):
        assert a.token_logprobs == pytest.approx(b.token_logprobs, abs=1e-4)


def test_scoring_with_generation_weights_scores_in_bf16_sharing_the_weights():
    import torch
    from conftest import build_tiny_model_and_tokenizer

    model, tokenizer = build_tiny_model_and_tokenizer()
    backend = TransformersBackend(model, tokenizer=tokenizer, generation_dtype="bfloat16")
    fast = backend.scoring_with_generation_weights()
    assert fast._scorer is backend._generator and fast._scorer.dtype == torch.bfloat16
    assert fast.model is backend.model  # a view: no weight copied
    exact, rounded = backend.score(PROMPTS, ["Is it?"] * 3), fast.score(PROMPTS, ["Is it?"] * 3)
    assert [s.tokens for s in exact] == [s.tokens for s in rounded]
    gaps = [abs(a - b) for e, r in zip(exact, rounded, strict=True)
            for a, b in zip(e.token_logprobs, r.token_logprobs, strict=True)]  # fmt: skip
    assert 0 < max(gaps) < 0.2  # bf16 rounding: close, not equal
    assert [s.logprob for s in backend.score(PROMPTS, ["Is it?"] * 3)] == [
        s.logprob for s in exact
    ]  # the backend itself still scores in fp32


def test_generate_ids_keeps_the_end_token_and_matches_generate(tiny_backend):
    params = GenerationParams(max_new_tokens=12, temperature=0.0)
    encoded = tiny_backend.encode_prompts(PROMPTS)
    rows = tiny_backend.generate_ids(encoded, params)
    texts = [c.text for c in tiny_backend.generate(PROMPTS, params)]
    ends = tiny_backend._end_ids
    for row, text in zip(rows, texts, strict=True):
        body = row[:-1] if row and row[-1] in ends else row
        assert not any(t in ends for t in body)  # an end token only at the end
        assert len(row) <= params.max_new_tokens + 1
        assert tiny_backend.tokenizer.decode(body, skip_special_tokens=True) == text
    with pytest.raises(ValueError, match="at least one token"):
        tiny_backend.generate_ids([[]], params)
