"""Calls to any OpenAI-compatible chat endpoint, with our own retries and cost accounting.

The models' settings (`ModelConfig`, `RetryPolicy`) live in `evolve.config`.
`LLMClient.complete` never raises for API problems: a failed call comes back as an
`LLMCall` with `reply=None` and an `error` that names the cause.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Mapping

import openai

from evolve.config import ModelConfig, RetryPolicy
from evolve.records import LLMCall

PLACEHOLDER_KEY = "EMPTY"  # local servers (vLLM, Ollama) accept any key
CHARS_PER_TOKEN = 4


def resolve_endpoint(
    model: ModelConfig, environ: Mapping[str, str] = os.environ
) -> tuple[str | None, str | None]:
    """Return (base_url, api_key) from the config, falling back to OPENAI_* env vars.

    base_url: `model.base_url`, else `OPENAI_BASE_URL`, else None (client default).
    key: the env var named by `model.api_key_env`, else `OPENAI_API_KEY`, else None.
    """
    base_url = model.base_url or environ.get("OPENAI_BASE_URL") or None
    key = None
    if model.api_key_env:
        key = environ.get(model.api_key_env) or None
    if key is None:
        key = environ.get("OPENAI_API_KEY") or None
    return base_url, key


def is_configured(model: ModelConfig, environ: Mapping[str, str] = os.environ) -> bool:
    """True if a key resolves, or an explicit base_url is set (a local server needs no key)."""
    base_url, key = resolve_endpoint(model, environ)
    return key is not None or base_url is not None


def estimate_tokens(text: str) -> int:
    """Rough token count: about 4 characters per token (rounded up; 0 for empty text)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def call_cost(model: ModelConfig, prompt_tokens: int, completion_tokens: int) -> float:
    """USD cost of one call with the given token counts."""
    return (prompt_tokens * model.price_in_per_m + completion_tokens * model.price_out_per_m) / 1e6


def max_call_cost(model: ModelConfig, prompt_tokens: int) -> float:
    """Worst-case USD cost of a call whose reply uses all `max_tokens` (for budget caps)."""
    return call_cost(model, prompt_tokens, model.max_tokens)


def _retry_after_s(exc: Exception) -> float | None:
    """Seconds asked for by a `Retry-After` (or `retry-after-ms`) header, if any."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    headers = response.headers
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue  # HTTP-date form is not supported: fall back to our backoff
        if seconds >= 0:
            return seconds
    return None


def _status_cause(exc: openai.APIStatusError) -> str:
    """Short cause of an HTTP error, e.g. 'HTTP 429 rate limited'."""
    status = exc.status_code
    if status == 429:
        return "HTTP 429 rate limited"
    if status >= 500:
        return f"HTTP {status} server error"
    return f"HTTP {status} client error"


class LLMClient:
    """One model's client; `complete` retries transient failures and never raises.

    Raises ValueError at construction if neither a key nor a base_url can be resolved.
    """

    def __init__(
        self,
        model: ModelConfig,
        retry: RetryPolicy,
        rng: random.Random | None = None,
        sleep: Callable[[float], object] = time.sleep,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        base_url, key = resolve_endpoint(model, environ)
        if key is None:
            if base_url is None:
                hint = model.api_key_env or "OPENAI_API_KEY"
                raise ValueError(f"model {model.name!r}: no API key (set {hint} or a base_url)")
            key = PLACEHOLDER_KEY
        self.model = model
        self.retry = retry
        self.rng = rng if rng is not None else random.Random()
        self.sleep = sleep
        self.client = openai.OpenAI(
            base_url=base_url, api_key=key, timeout=retry.timeout_s, max_retries=0
        )

    def backoff_s(self, attempt: int) -> float:
        """Full-jitter delay after failed attempt number `attempt` (0-based)."""
        cap = min(self.retry.backoff_max_s, self.retry.backoff_base_s * 2**attempt)
        return cap * self.rng.random()

    def _request(self, system: str, user: str, temperature: float):
        """Try up to max_retries+1 times; return (response or None, error or None, attempts)."""
        total = self.retry.max_retries + 1
        for attempt in range(total):
            retry_after = None
            try:
                response = self.client.chat.completions.create(
                    model=self.model.name,
                    messages=[
                        {"role": "system", "content": system},
                        {"role": "user", "content": user},
                    ],
                    temperature=temperature,
                    max_tokens=self.model.max_tokens,
                )
                return response, None, attempt + 1
            except openai.APITimeoutError:
                cause, detail = f"timeout after {self.retry.timeout_s:g}s", ""
            except openai.APIConnectionError as exc:
                cause, detail = "connection error", str(exc)
            except openai.APIStatusError as exc:
                cause, detail = _status_cause(exc), exc.message
                if exc.status_code != 429 and exc.status_code < 500:
                    return None, f"{cause}: {detail}", attempt + 1  # retrying will not help
                retry_after = _retry_after_s(exc)
            except Exception as exc:  # a malformed response must not kill the run
                return None, f"unexpected {type(exc).__name__}: {exc}", attempt + 1
            if attempt + 1 < total:
                if retry_after is not None:
                    delay = min(retry_after, self.retry.backoff_max_s)
                else:
                    delay = self.backoff_s(attempt)
                self.sleep(delay)
        error = f"{cause} ({total} attempts)" + (f": {detail}" if detail else "")
        return None, error, total

    def complete(self, system: str, user: str, temperature: float, generation: int) -> LLMCall:
        """Ask the model (with retries); return the reply, or the error, as an `LLMCall`.

        Token counts come from the server's `usage`, or `estimate_tokens` if it has none;
        `latency_s` is the wall time of the whole call, retries and waits included.
        """
        start, created_at = time.monotonic(), time.time()
        response, error, attempts = self._request(system, user, temperature)
        reply, prompt_tokens, completion_tokens = None, 0, 0
        if response is not None and not response.choices:
            error = "malformed response: no choices"
        elif response is not None:
            reply = response.choices[0].message.content or ""
            usage = response.usage
            if usage is not None and usage.prompt_tokens is not None:
                prompt_tokens = usage.prompt_tokens
                completion_tokens = usage.completion_tokens or 0
            else:
                prompt_tokens = estimate_tokens(system) + estimate_tokens(user)
                completion_tokens = estimate_tokens(reply)
        return LLMCall(
            generation=generation,
            model=self.model.name,
            temperature=temperature,
            system=system,
            user=user,
            reply=reply,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost=call_cost(self.model, prompt_tokens, completion_tokens),
            latency_s=time.monotonic() - start,
            attempts=attempts,
            error=error,
            created_at=created_at,
        )
