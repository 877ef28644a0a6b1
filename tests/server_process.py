"""``pylampe serve`` as a subprocess on a free loopback port, for tests.

Only 127.0.0.1 is ever used. Start-up waits in a bounded loop; ``stop()``
always ends the process (terminate, then kill).
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

HOST = "127.0.0.1"
START_TIMEOUT_S = 90.0

_WORDS = ("the a is of and to in it that was for on are with as be at this have from or one by word but"
          " not what all we when your can said there use an each which do how key pass number hello world").split()


def document(n_words: int, seed: int) -> str:
    """Words of the tiny models' vocabulary (about one token each), reproducibly random."""
    rng = random.Random(seed)
    return " ".join(rng.choice(_WORDS) for _ in range(n_words))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def pylampe_command() -> str:
    return str(Path(sys.executable).with_name("pylampe"))


class ServerProcess:
    """``pylampe serve ARGS --port P``; its log goes to ``log_path``."""

    def __init__(self, args: List[str], log_path: Path):
        self.port = free_port()
        self.base = f"http://{HOST}:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [pylampe_command(), "serve", *args, "--host", HOST, "--port", str(self.port)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pylampe serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                status, _ = self.request("GET", "/v1/models", headers=self._auth_probe())
                if status in (200, 401):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"pylampe serve did not answer within {START_TIMEOUT_S} s:\n{self.log()}")

    def _auth_probe(self) -> Dict[str, str]:
        return {}

    def request(self, method: str, path: str, body: Optional[bytes] = None,
                headers: Optional[Dict[str, str]] = None, timeout: float = 60.0) -> Tuple[int, Any]:
        """One HTTP request; returns (status, parsed JSON or text)."""
        req = urllib.request.Request(self.base + path, data=body, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def post_json(self, path: str, payload: Dict[str, Any], **kwargs: Any) -> Tuple[int, Any]:
        return self.request("POST", path, json.dumps(payload).encode(), **kwargs)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self._log.close()
