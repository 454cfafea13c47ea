"""LLMClient against a real local OpenAI-compatible server, through the real openai client."""

import random
import threading
import time

import pytest
from llm_server import Reply, ScriptedLLMServer, llm_server  # noqa: F401

from evolve.llm import (
    LLMClient,
    ModelConfig,
    RetryPolicy,
    call_cost,
    estimate_tokens,
    is_configured,
    max_call_cost,
    resolve_endpoint,
)

FAST = RetryPolicy(timeout_s=0.5, max_retries=2, backoff_base_s=1.0, backoff_max_s=8.0)


def make_client(server, retry=FAST, seed=0, **model_kw):
    sleeps = []
    model = ModelConfig(name="m1", base_url=server.base_url, **model_kw)
    client = LLMClient(model, retry, rng=random.Random(seed), sleep=sleeps.append)
    return client, sleeps


def expected_backoffs(seed, n, retry=FAST):
    rng = random.Random(seed)
    return [min(retry.backoff_max_s, retry.backoff_base_s * 2**i) * rng.random() for i in range(n)]


def test_normal_reply_tokens_and_cost(llm_server):  # noqa: F811
    llm_server.enqueue(Reply("hello world", prompt_tokens=1000, completion_tokens=500))
    client, sleeps = make_client(llm_server, price_in_per_m=2.0, price_out_per_m=10.0)
    call = client.complete("sys", "usr", 0.3, generation=7)
    assert call.reply == "hello world" and call.error is None
    assert (call.prompt_tokens, call.completion_tokens) == (1000, 500)
    assert call.cost == pytest.approx(1000 * 2e-6 + 500 * 10e-6)
    assert call.attempts == 1 and sleeps == []
    assert (call.generation, call.model, call.temperature) == (7, "m1", 0.3)
    assert call.latency_s > 0 and call.created_at > 0
    req = llm_server.requests[0]
    assert req["model"] == "m1" and req["temperature"] == 0.3 and req["max_tokens"] == 4096
    assert req["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "usr"},
    ]


def test_rate_limited_then_success_uses_jittered_backoff(llm_server):  # noqa: F811
    llm_server.enqueue(Reply.rate_limited(), Reply.rate_limited(), Reply("ok"))
    client, sleeps = make_client(llm_server, seed=3)
    call = client.complete("s", "u", 0.7, 0)
    assert call.reply == "ok" and call.attempts == 3 and call.error is None
    assert sleeps == pytest.approx(expected_backoffs(3, 2))
    assert len(llm_server.requests) == 3


def test_retry_after_header_is_honoured_and_capped(llm_server):  # noqa: F811
    llm_server.enqueue(Reply.rate_limited(retry_after=2), Reply.rate_limited(retry_after=100), "ok")
    client, sleeps = make_client(llm_server)
    call = client.complete("s", "u", 0.7, 0)
    assert call.reply == "ok" and call.attempts == 3
    assert sleeps == [2.0, FAST.backoff_max_s]


def test_server_error_then_success(llm_server):  # noqa: F811
    llm_server.enqueue(Reply.server_error(), Reply.server_error(503), "fine")
    client, sleeps = make_client(llm_server)
    call = client.complete("s", "u", 0.7, 0)
    assert call.reply == "fine" and call.attempts == 3 and len(sleeps) == 2


def test_persistent_server_error_gives_up_without_raising(llm_server):  # noqa: F811
    llm_server.responder = lambda req: Reply.server_error(message="boom")
    client, sleeps = make_client(llm_server)
    call = client.complete("s", "u", 0.7, 0)
    assert call.reply is None and call.attempts == FAST.max_retries + 1
    assert "HTTP 500" in call.error and "3 attempts" in call.error and "boom" in call.error
    assert len(llm_server.requests) == 3 and len(sleeps) == 2


def test_persistent_rate_limit_error_text(llm_server):  # noqa: F811
    llm_server.responder = lambda req: Reply.rate_limited()
    client, _ = make_client(llm_server)
    call = client.complete("s", "u", 0.7, 0)
    assert call.reply is None and call.error.startswith("HTTP 429 rate limited (3 attempts)")


def test_slow_reply_times_out(llm_server):  # noqa: F811
    llm_server.responder = lambda req: Reply.slow(5.0, "too late")
    retry = RetryPolicy(timeout_s=0.3, max_retries=1)
    client, sleeps = make_client(llm_server, retry=retry)
    start = time.monotonic()
    call = client.complete("s", "u", 0.7, 0)
    assert time.monotonic() - start < 3
    assert call.reply is None and call.attempts == 2 and len(sleeps) == 1
    assert call.error.startswith("timeout after 0.3s")


def test_slow_then_fast_recovers(llm_server):  # noqa: F811
    llm_server.enqueue(Reply.slow(5.0, "late"), Reply("quick"))
    client, _ = make_client(llm_server, retry=RetryPolicy(timeout_s=0.3, max_retries=1))
    call = client.complete("s", "u", 0.7, 0)
    assert call.reply == "quick" and call.attempts == 2


def test_client_error_not_retried(llm_server):  # noqa: F811
    llm_server.enqueue(Reply.error(400, "context length exceeded"), "never")
    client, sleeps = make_client(llm_server)
    call = client.complete("s", "u", 0.7, 0)
    assert call.reply is None and call.attempts == 1 and sleeps == []
    assert "HTTP 400" in call.error and "context length exceeded" in call.error
    assert llm_server.pending() == 1


def test_connection_error_is_reported():
    with ScriptedLLMServer() as server:
        url = server.base_url
    model = ModelConfig(name="m", base_url=url)
    client = LLMClient(model, RetryPolicy(timeout_s=0.5, max_retries=1), sleep=lambda s: None)
    call = client.complete("s", "u", 0.7, 0)
    assert call.reply is None and call.attempts == 2
    assert call.error.startswith("connection error (2 attempts)")


def test_missing_usage_is_estimated(llm_server):  # noqa: F811
    llm_server.enqueue(Reply("x" * 40, usage=False))
    client, _ = make_client(llm_server, price_in_per_m=1.0, price_out_per_m=1.0)
    call = client.complete("s" * 8, "u" * 12, 0.7, 0)
    assert (call.prompt_tokens, call.completion_tokens) == (2 + 3, 10)
    assert call.cost == pytest.approx(15e-6)


def test_script_exhausted_is_an_error(llm_server):  # noqa: F811
    client, _ = make_client(llm_server, retry=RetryPolicy(max_retries=0))
    call = client.complete("s", "u", 0.7, 0)
    assert call.reply is None and "script exhausted" in call.error


def test_env_fallback_for_base_url_and_key(llm_server, monkeypatch):  # noqa: F811
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    model = ModelConfig(name="m")
    assert resolve_endpoint(model) == (llm_server.base_url, "sk-env")
    llm_server.enqueue("hi")
    call = LLMClient(model, FAST).complete("s", "u", 0.7, 0)
    assert call.reply == "hi"


def test_named_key_env_is_honoured(llm_server, monkeypatch):  # noqa: F811
    monkeypatch.setenv("OPENAI_API_KEY", "sk-default")
    monkeypatch.setenv("MY_KEY", "sk-mine")
    model = ModelConfig(name="m", base_url=llm_server.base_url, api_key_env="MY_KEY")
    assert resolve_endpoint(model) == (llm_server.base_url, "sk-mine")
    llm_server.enqueue("ok")
    assert LLMClient(model, FAST).complete("s", "u", 0.7, 0).reply == "ok"
    assert llm_server.request_headers[0]["authorization"] == "Bearer sk-mine"
    # a named env var that is unset falls back to OPENAI_API_KEY
    env = {"OPENAI_API_KEY": "sk-default"}
    assert resolve_endpoint(ModelConfig(name="m", api_key_env="UNSET"), env) == (None, "sk-default")


def test_is_configured():
    assert not is_configured(ModelConfig(name="m"), environ={})
    assert is_configured(ModelConfig(name="m"), environ={"OPENAI_API_KEY": "k"})
    assert is_configured(ModelConfig(name="m", base_url="http://localhost:11434/v1"), environ={})
    assert is_configured(ModelConfig(name="m"), environ={"OPENAI_BASE_URL": "http://h/v1"})
    assert not is_configured(ModelConfig(name="m", api_key_env="K"), environ={"K": ""})
    with pytest.raises(ValueError, match="no API key"):
        LLMClient(ModelConfig(name="m"), FAST, environ={})


def test_local_endpoint_without_key_uses_placeholder(llm_server):  # noqa: F811
    model = ModelConfig(name="m", base_url=llm_server.base_url, api_key_env="NOPE")
    client = LLMClient(model, FAST, environ={})
    llm_server.enqueue("local")
    assert client.complete("s", "u", 0.7, 0).reply == "local"
    assert llm_server.request_headers[0]["authorization"] == "Bearer EMPTY"


def test_token_and_cost_helpers():
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1 and estimate_tokens("abcde") == 2
    model = ModelConfig(name="m", max_tokens=1000, price_in_per_m=3.0, price_out_per_m=15.0)
    assert call_cost(model, 1_000_000, 0) == pytest.approx(3.0)
    assert max_call_cost(model, 2000) == pytest.approx(2000 * 3e-6 + 1000 * 15e-6)


def test_slow_reply_does_not_block_others_or_shutdown():
    server = ScriptedLLMServer(responder=lambda req: "fast").start()
    server.enqueue(Reply.slow(30.0, "slow"))
    model = ModelConfig(name="m", base_url=server.base_url)
    slow_client = LLMClient(model, RetryPolicy(timeout_s=60, max_retries=0))
    worker = threading.Thread(target=slow_client.complete, args=("s", "u", 0.7, 0), daemon=True)
    worker.start()
    while not server.requests:
        time.sleep(0.01)
    assert LLMClient(model, FAST).complete("s", "u", 0.7, 0).reply == "fast"
    start = time.monotonic()
    server.close()
    assert time.monotonic() - start < 2
    worker.join(timeout=5)
    assert not worker.is_alive()
