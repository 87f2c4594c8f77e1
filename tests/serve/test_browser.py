"""The web page in a real browser: Debian's Chromium driven by Playwright, headless.

Needs ``apt-get install -y chromium`` and ``pip install playwright`` (the
browser download of ``playwright install`` is not used). The annotation test
also needs the onnxruntime-web files (``npm install --prefix
$MOBILESAM_HOME/web-runtime onnxruntime-web@1.30``, or a folder named by
``$MOBILESAM_WEB_RUNTIME``); the other tests run the page without them, so they
cover its fallback to the server's decoder.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """uvicorn serving ``app`` on 127.0.0.1:port in a thread; ``stop()`` ends it."""

    def __init__(self, app, port: int) -> None:
        uvicorn = pytest.importorskip("uvicorn")
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                pytest.fail("uvicorn did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def server_url(small_model, tmp_path_factory):
    from mobilesam.serve import create_app

    # No web runtime: the page must fall back to the server's prompt endpoint.
    none = tmp_path_factory.mktemp("no-web-runtime")
    app = create_app(small_model, model_name="vit_t-256", weights="random", web_runtime=none)
    server = _Server(app, _free_port())
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install -y chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1200, "height": 900},
            accept_downloads=True,
        )
        yield context
        context.close()


def _painted_pixels(page) -> int:
    return page.evaluate(
        """() => {
        const c = document.getElementById('mask-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
        return n;
    }"""
    )


def _open_photo(page, url: str, photo: Path, requests: list[str]) -> None:
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url + "/")
    page.set_input_files("#file-input", str(photo))
    page.wait_for_selector("#canvas-wrap:not([hidden])", timeout=60_000)
    page.wait_for_function(
        "document.getElementById('status').textContent.includes('Click the object')",
        timeout=60_000,
    )


def test_click_shows_mask_overlay(server_url, browser_context, shared_dir, tmp_path):
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    requests: list[str] = []
    _open_photo(page, server_url, shared_dir / "images" / "dog.jpg", requests)
    assert page.is_visible("#weights-warning"), "random weights must be announced on the page"
    page.wait_for_selector("#decoder-mode[data-mode='server']")
    assert page.get_attribute("#mask-canvas", "data-masks") == "0"
    assert _painted_pixels(page) == 0

    canvas = page.locator("#prompt-canvas")
    box = canvas.bounding_box()
    canvas.click(position={"x": box["width"] * 0.45, "y": box["height"] * 0.55})
    page.wait_for_selector("#mask-canvas[data-masks='1']", timeout=60_000)
    candidates = page.locator("#candidates button")
    assert candidates.count() == 3
    # The overlay paints exactly the pixels of the selected mask (decoded from its RLE).
    selected = page.locator("#candidates button.on")
    area = int(selected.get_attribute("title").split(", ")[1].split(" ")[0])
    assert area > 0
    assert _painted_pixels(page) == area

    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000

    # Choosing another candidate repaints the overlay with that mask.
    other = next(i for i in range(3) if "on" not in candidates.nth(i).get_attribute("class"))
    candidates.nth(other).click()
    area_other = int(candidates.nth(other).get_attribute("title").split(", ")[1].split(" ")[0])
    assert _painted_pixels(page) == area_other

    # Right click adds a background point; undo removes it; clear removes everything.
    canvas.click(position={"x": box["width"] * 0.1, "y": box["height"] * 0.1}, button="right")
    page.wait_for_function("!document.getElementById('undo').disabled")
    page.click("#undo")
    page.click("#clear")
    page.wait_for_selector("#mask-canvas[data-masks='0']")
    assert _painted_pixels(page) == 0

    # Dragging draws a box prompt.
    x0, y0 = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + 80, y0 + 60, steps=5)
    page.mouse.up()
    page.wait_for_selector("#mask-canvas[data-masks='1']", timeout=60_000)

    # Downloads: the mask PNG and the COCO JSON with the mask's RLE.
    with page.expect_download() as dl:
        page.click("#download-png")
    png = Path(dl.value.path()).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with page.expect_download() as dl:
        page.click("#download-coco")
    coco = json.loads(Path(dl.value.path()).read_text())
    assert coco["images"][0]["width"] == 800 and len(coco["annotations"]) == 1
    from pycocotools import mask as mask_utils

    ann = coco["annotations"][0]
    assert int(mask_utils.decode(ann["segmentation"]).sum()) == ann["area"]

    assert not errors, errors
    external = [u for u in requests if not u.startswith((server_url, "data:", "blob:"))]
    assert not external, f"the page made external requests: {external}"
    page.close()


def test_segment_everything_button(server_url, browser_context, shared_dir):
    page = browser_context.new_page()
    _open_photo(page, server_url, shared_dir / "images" / "truck.jpg", [])
    page.select_option("#grid", "8")
    page.click("#everything")
    page.wait_for_function(
        "/masks \\(|failed/.test(document.getElementById('status').textContent)",
        timeout=120_000,
    )
    status = page.text_content("#status")
    if "not available" in status:
        pytest.skip(f"segment-everything is not available in this install: {status}")
    assert "failed" not in status, status
    assert page.get_attribute("#mask-canvas", "data-view") == "everything"
    n = int(page.get_attribute("#mask-canvas", "data-masks"))
    assert (n > 0) == (_painted_pixels(page) > 0)
    page.close()


def test_phone_viewport(server_url, browser_context, shared_dir, tmp_path):
    page = browser_context.new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(server_url + "/")
    # Drop the photo on the page (a synthetic drop event carrying the file).
    data = base64.b64encode((shared_dir / "images" / "dog.jpg").read_bytes()).decode()
    page.evaluate(
        """(b64) => {
        const bin = atob(b64);
        const bytes = new Uint8Array(bin.length);
        for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "dog.jpg", {type: "image/jpeg"}));
        const ev = new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true});
        document.getElementById("stage").dispatchEvent(ev);
    }""",
        data,
    )
    page.wait_for_function(
        "document.getElementById('status').textContent.includes('Click the object')",
        timeout=60_000,
    )
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is wider than the phone screen ({width}px)"
    canvas = page.locator("#prompt-canvas")
    box = canvas.bounding_box()
    assert box["width"] <= 390
    canvas.click(position={"x": box["width"] / 2, "y": box["height"] / 2})
    page.wait_for_selector("#mask-canvas[data-masks='1']", timeout=60_000)
    page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
    page.close()


# ------------------------------------------------------------------ annotation project
def _web_runtime():
    from mobilesam.serve.webruntime import find_runtime

    found = find_runtime(os.environ.get("MOBILESAM_WEB_RUNTIME"))
    if found is None:
        pytest.skip(
            "onnxruntime-web not found: npm install --prefix $MOBILESAM_HOME/web-runtime "
            "onnxruntime-web@1.30 (or set MOBILESAM_WEB_RUNTIME)"
        )
    return found


def _wait_status(page, text: str, timeout: int = 120_000) -> None:
    page.wait_for_function(
        "(t) => document.getElementById('status').textContent.includes(t)",
        arg=text,
        timeout=timeout,
    )


def _wait_for(page, selector: str, timeout: int = 60_000) -> None:
    """Wait for ``selector``; on a timeout fail with the page's status line."""
    try:
        page.wait_for_selector(selector, timeout=timeout)
    except Exception:  # noqa: BLE001 - playwright's TimeoutError
        status = page.text_content("#status")
        objects = page.get_attribute("#mask-canvas", "data-objects")
        pytest.fail(f"{selector} did not appear; status: {status!r}, objects: {objects}")


def _iou(a, b) -> float:
    import numpy as np

    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _decode(rle):
    from pycocotools import mask as mask_utils

    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def test_annotation_project_in_browser(small_model, browser_context, shared_dir, tmp_path):
    httpx = pytest.importorskip("httpx")
    from pycocotools.coco import COCO

    from mobilesam.serve import create_app

    runtime = _web_runtime()
    folder = tmp_path / "project"
    folder.mkdir()
    for name in ("dog.jpg", "truck.jpg"):
        shutil.copy(shared_dir / "images" / name, folder / name)
    (folder / "labels.txt").write_text("dog\ntruck\n")
    decoders = tmp_path / "decoders"

    def start(port: int) -> _Server:
        app = create_app(
            small_model,
            model_name="vit_t-256",
            weights="random",
            project=folder,
            web_runtime=runtime,
            decoder_cache=decoders,
        )
        return _Server(app, port)

    port = _free_port()
    server = start(port)
    url = server.url
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    requests: list[tuple[str, str]] = []
    page.on("request", lambda r: requests.append((r.method, r.url)))
    page.goto(url + "/")
    _wait_status(page, "Click the object")  # the first project image is open
    # The decoder graph is exported on the first request (tens of seconds), then cached.
    page.wait_for_selector("#decoder-mode[data-mode='browser']", timeout=240_000)
    assert page.input_value("#project-image") == "dog.jpg"

    canvas = page.locator("#prompt-canvas")
    box = canvas.bounding_box()
    # Hovering shows a mask preview, computed in the browser.
    for fx, fy in ((0.3, 0.4), (0.45, 0.55)):
        page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy, steps=3)
    page.wait_for_selector("#mask-canvas[data-hover='1']", timeout=60_000)

    # A click answers in the browser; its masks match the server's for the same prompt.
    canvas.click(position={"x": box["width"] * 0.45, "y": box["height"] * 0.55})
    _wait_status(page, "browser)")
    result = page.evaluate(
        "() => ({prompts: window.__mobilesam.prompts, id: window.__mobilesam.imageId, "
        "masks: window.__mobilesam.result.masks.map((m) => ({rle: m.rle, area: m.area, "
        "score: m.score}))})"
    )
    (point,) = result["prompts"]
    server_masks = httpx.post(
        f"{url}/api/images/{result['id']}/predict",
        json={"points": [[point["x"], point["y"]]], "labels": [1], "formats": ["rle"]},
    ).json()["masks"]
    ious = []
    for mine, theirs in zip(result["masks"], server_masks):
        m = _decode(mine["rle"])
        assert int(m.sum()) == mine["area"]  # the page's RLE encoder and area agree
        ious.append(_iou(m, _decode(theirs["rle"])))
        assert abs(mine["score"] - theirs["score"]) < 1e-3
    print(f"browser vs server mask IoU: {[round(v, 5) for v in ious]}")
    assert min(ious) > 0.99, ious

    # Object 1: label "dog" by key 1, saved with Enter.
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    _wait_for(page, "#mask-canvas[data-objects='1']")
    # Object 2: a box, a typed label.
    x0, y0 = box["x"] + box["width"] * 0.1, box["y"] + box["height"] * 0.1
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + box["width"] * 0.25, y0 + box["height"] * 0.3, steps=5)
    page.mouse.up()
    _wait_status(page, "browser)")
    page.fill("#label-input", "ball")
    page.press("#label-input", "Enter")
    _wait_for(page, "#mask-canvas[data-objects='2']")
    # Select the first object and change its label: an edit with a version check.
    page.click("#object-list li >> nth=0")
    page.fill("#label-input", "puppy")
    page.press("#label-input", "Enter")
    _wait_status(page, "Saved object")
    page.wait_for_function(
        "document.querySelector('#object-list li .name').textContent === 'puppy'"
    )
    page.screenshot(path=str(tmp_path / "annotate.png"))
    predicts = [u for m, u in requests if "/predict" in u]
    assert not predicts, f"the page asked the server for masks: {predicts}"

    # A server restart (a new app on the same folder) and a reload lose nothing.
    server.stop()
    server = start(port)
    page.reload()
    _wait_status(page, "Click the object")
    _wait_for(page, "#mask-canvas[data-objects='2']")
    names = page.locator("#object-list li .name").all_text_contents()
    assert names == ["puppy", "ball"]
    page.screenshot(path=str(tmp_path / "annotate-reloaded.png"))

    coco_path = tmp_path / "coco.json"
    coco_path.write_bytes(httpx.get(f"{url}/api/project/export?format=coco").content)
    server.stop()
    coco = COCO(str(coco_path))
    cats = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    assert list(cats.values()) == ["dog", "truck", "ball", "puppy"]
    anns = coco.loadAnns(coco.getAnnIds())
    assert [cats[a["category_id"]] for a in anns] == ["puppy", "ball"]
    for a in anns:
        assert int(coco.annToMask(a).sum()) == a["area"]
    assert not errors, errors
    external = [u for _, u in requests if not u.startswith((url, "data:", "blob:"))]
    assert not external, f"the page made external requests: {external}"
    page.close()
