"""Priority scheduling (`jinx serve --scheduling-policy priority`, vLLM's request `priority`),
through the openai client.

With one run slot (--max-num-seqs 1), a request of a better (smaller) priority that arrives
while a long one of a worse priority streams takes the slot at once: it finishes first, the
long one is preempted (its KV recomputed later, counted in /metrics) and still ends with the
very text it gives alone. Under the default FCFS policy a non-zero priority is a 400.
"""
import re
import threading
import time

import httpx
import openai
import pytest

from conftest import API_KEY, Server

MSG = [{"role": "user", "content": "Tell me a long story about a lighthouse keeper."}]


def run_stream(c, priority, max_tokens, log, name, started=None):
    stream = c.chat.completions.create(
        model="smollm2", messages=MSG, temperature=0, max_tokens=max_tokens, stream=True,
        extra_body={"priority": priority, "ignore_eos": True})
    text = ""
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
            if started is not None:
                started.set()
    log.append(name)
    return text


def client_of(s):
    return openai.OpenAI(base_url=s.url + "/v1", api_key=API_KEY, max_retries=0, timeout=300)


def preemptions(url):
    r = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {API_KEY}"})
    m = re.search(r"^jinx:num_preemptions_total\S* (\S+)$", r.text, re.M)
    assert m, r.text[:2000]
    return float(m.group(1))


def test_priority_needs_the_policy(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="smollm2", messages=MSG, max_tokens=2,
                                       extra_body={"priority": 1})
    assert "--scheduling-policy priority" in str(e.value)
    r = client.chat.completions.create(model="smollm2", messages=MSG, max_tokens=2,
                                       extra_body={"priority": 0})
    assert r.choices[0].finish_reason == "length"


def test_better_priority_takes_the_run_slot():
    s = Server("priority", "--api-key", API_KEY, "--scheduling-policy", "priority",
               "--max-num-seqs", "1")
    try:
        c = client_of(s)
        with pytest.raises(openai.BadRequestError):  # not an integer
            c.chat.completions.create(model="smollm2", messages=MSG, max_tokens=2,
                                      extra_body={"priority": "high"})
        short_alone = run_stream(c, 0, 12, [], "short")
        long_alone = run_stream(c, 0, 160, [], "long")
        before = preemptions(s.url)

        log, out, started = [], {}, threading.Event()
        t = threading.Thread(target=lambda: out.setdefault(
            "long", run_stream(c, 10, 160, log, "long", started)))
        t.start()
        assert started.wait(120), "the long request never streamed"
        time.sleep(0.2)
        out["short"] = run_stream(c, -5, 12, log, "short")
        t.join(300)
        assert not t.is_alive()
        assert log == ["short", "long"], log
        assert out["short"] == short_alone
        assert out["long"] == long_alone  # recomputed after preemption: the same greedy text
        assert preemptions(s.url) >= before + 1
    finally:
        s.stop()
