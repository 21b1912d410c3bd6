"""Open a fillers-written ``.caffemodel`` in Netron and take a screenshot with headless Chromium.

    pip install netron            # and Debian's chromium: apt-get install chromium
    python tools/netron_screenshot.py examples/lenet.prototxt -o docs/netron-lenet.png

Fills NET, saves the whole net (``fillers.save(..., net=net)``) to a temporary ``.caffemodel``, serves it with
Netron on the loopback interface, loads the page in headless Chromium (driven through the DevTools protocol on
a pipe: no extra package), and checks that Netron built the graph from the file alone: every layer's name in
the page's text (boxes labelled with names; an Input layer is a graph input named by its top) and an edge for
every blob a layer reads.  Then it writes the screenshot.
Exit status 0 when the checks pass.  Not part of the test suite (it needs a browser and Netron); run it for a
release.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fillers
from fillers.shapes import built_net


class DevTools:
    """The Chrome DevTools protocol over ``--remote-debugging-pipe`` (fds 3 and 4, NUL-terminated JSON)."""

    def __init__(self, chromium: str, width: int, height: int) -> None:
        to_child_read, self._write = os.pipe()
        self._read, from_child_write = os.pipe()

        def fds() -> None:  # in the child: its fd 3 reads our commands, its fd 4 writes the answers
            read, write = os.dup(to_child_read), os.dup(from_child_write)  # neither may clobber the other
            os.dup2(read, 3)
            os.dup2(write, 4)

        self.process = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             "--no-first-run", f"--window-size={width},{height}", "--hide-scrollbars", "about:blank"],
            # fds 3 and 4 are kept open: subprocess closes the others after preexec_fn
            preexec_fn=fds, pass_fds=(3, 4, to_child_read, from_child_write), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_child_read)
        os.close(from_child_write)
        self._buffer = b""
        self._id = 0
        self.session: str | None = None

    def call(self, method: str, session: bool = True, **params):
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") == self._id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result["result"].get("value")

    def close(self) -> None:
        try:
            self.call("Browser.close", session=False)
        except (RuntimeError, OSError):
            pass
        self.process.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("net", help="net definition to fill (e.g. examples/lenet.prototxt)")
    parser.add_argument("-o", "--output", required=True, help="screenshot PNG")
    parser.add_argument("--size", default="560x1000", help="browser window WIDTHxHEIGHT (default 560x1000)")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for Netron's graph")
    args = parser.parse_args(argv)
    import netron

    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                    None)
    if chromium is None:
        print("no Chromium found (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    width, height = (int(v) for v in args.size.split("x"))
    net = fillers.load_net(args.net)
    layers = built_net(net).layer
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / (Path(args.net).name.split(".")[0] + ".caffemodel")
        fillers.save(fillers.fill_net(net, seed=1), model, net=net)
        port = _free_port()
        netron.start(str(model), address=("127.0.0.1", port), browse=False)
        url = f"http://127.0.0.1:{port}/"
        tools = DevTools(chromium, width, height)
        try:
            target = tools.call("Target.createTarget", session=False, url="about:blank")["targetId"]
            tools.session = tools.call("Target.attachToTarget", session=False, targetId=target,
                                       flatten=True)["sessionId"]
            # Netron asks for cookie consent on a first visit; a consent cookie answers it.
            tools.call("Network.setCookie", name="consent", value=str(int(time.time() * 1000)), url=url)
            tools.call("Page.navigate", url=url)
            deadline = time.monotonic() + args.timeout
            nodes: list[str] = []
            while time.monotonic() < deadline:
                nodes = tools.evaluate("[...document.querySelectorAll('[id^=\"node-name-\"]')].map(e => e.id)") or []
                if nodes:
                    break
                time.sleep(0.5)
            tools.evaluate("window.__view__.toggle('names')")  # label the boxes with layer names
            time.sleep(2)
            text = tools.evaluate("document.body.innerText + ' ' + [...document.querySelectorAll('svg text')]"
                                  ".map(e => e.textContent).join(' ')") or ""
            edges = set(tools.evaluate("[...document.querySelectorAll('[id^=\"edge-\"]')].map(e => e.id)") or [])
            shot = tools.call("Page.captureScreenshot", format="png")["data"]
        finally:
            tools.close()
            netron.stop()
    Path(args.output).write_bytes(base64.b64decode(shot))
    # Netron draws an in-place activation inside its producer's box and an Input layer as a graph input named
    # by its top, so not every layer is a node of its own; every name (an Input layer's tops) is in the page's
    # text, and every blob read is an edge (id "edge-<blob>", "edge-<blob>\n<k>" for the k-th in-place version).
    shown = [name for layer in layers for name in (layer.top if layer.type == "Input" else [layer.name])]
    missing_text = [n for n in shown if n not in text]
    read = sorted({b for layer in layers for b in layer.bottom})
    missing_edges = [b for b in read if f"edge-{b}" not in edges and not any(e.startswith(f"edge-{b}\n")
                                                                              for e in edges)]
    print(f"{model.name}: {len(layers)} layers, Netron drew {len(nodes)} named nodes and {len(edges)} edges; "
          f"screenshot -> {args.output}")
    for what, missing in (("layer names in the page text", missing_text), ("edges for blobs read", missing_edges)):
        if missing:
            print(f"missing {what}: {missing}", file=sys.stderr)
    return 0 if not (missing_text or missing_edges) else 1


if __name__ == "__main__":
    sys.exit(main())
