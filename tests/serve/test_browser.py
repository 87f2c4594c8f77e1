"""The web page in a real browser: Debian's Chromium driven by Playwright, headless.

Needs ``apt-get install -y chromium`` and ``pip install playwright`` (the
browser download of ``playwright install`` is not used).
"""

from __future__ import annotations

import base64
import json
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


@pytest.fixture(scope="module")
def server_url(small_model):
    uvicorn = pytest.importorskip("uvicorn")
    from mobilesam.serve import create_app

    port = _free_port()
    app = create_app(small_model, model_name="vit_t-256", weights="random")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


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
