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


# Records, in the page, whether the job bar was shown and every stage text it showed.
_WATCH_JOB = """() => {
    const seen = window.__jobSeen = {shown: false, stages: []};
    const bar = document.getElementById('job');
    new MutationObserver(() => {
        if (!bar.hidden) seen.shown = true;
        const t = document.getElementById('job-stage').textContent;
        if (t && seen.stages[seen.stages.length - 1] !== t) seen.stages.push(t);
    }).observe(bar, {attributes: true, childList: true, subtree: true, characterData: true});
}"""


def _job_polls(requests: list[tuple[str, str]], job_id: str = "") -> int:
    return sum(m == "GET" and f"/api/jobs/{job_id}" in u for m, u in requests)


def test_segment_everything_button(server_url, browser_context, shared_dir):
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    _open_photo(page, server_url, shared_dir / "images" / "truck.jpg", [])
    requests: list[tuple[str, str]] = []
    page.on("request", lambda r: requests.append((r.method, r.url)))
    assert page.is_hidden("#job")
    page.select_option("#grid", "8")
    page.evaluate(_WATCH_JOB)
    page.click("#everything")
    page.wait_for_function(
        "/masks \\(|failed|busy/.test(document.getElementById('status').textContent)",
        timeout=120_000,
    )
    status = page.text_content("#status")
    if "not available" in status:
        pytest.skip(f"segment-everything is not available in this install: {status}")
    assert "masks (" in status, status
    assert page.get_attribute("#mask-canvas", "data-view") == "everything"
    # Random weights often give no mask at all here; the held service below paints some.
    n = int(page.get_attribute("#mask-canvas", "data-masks"))
    assert status.startswith(f"{n} masks"), status
    assert (n > 0) == (_painted_pixels(page) > 0)

    # The progress bar showed the job's stages from the server, and is gone now.
    seen = page.evaluate("window.__jobSeen")
    assert seen["shown"], seen
    assert [s for s in seen["stages"] if s != "submitting"], seen
    assert page.is_hidden("#job") and page.is_enabled("#everything")

    # The page used the jobs API, not the synchronous route, and stopped polling at the end.
    posts = [u for m, u in requests if m == "POST"]
    assert [u for u in posts if u.endswith("/everything/jobs")], requests
    assert not [u for u in posts if u.endswith("/everything")], posts
    polls = _job_polls(requests)
    assert polls > 0, requests
    page.wait_for_timeout(1000)
    assert _job_polls(requests) == polls, "the page still polls a finished job"
    assert not errors, errors
    page.close()


# ------------------------------------------------------------------ jobs: cancel, busy, failure
def _held_service(model, limits):
    """A service whose segment-everything jobs wait for the test before doing the real work.

    While held they report the stage "held by the test" and stop at a cancellation;
    ``release`` (an Event) lets them go on; ``fail`` makes them raise instead. The real
    generator then runs without its quality filters, so that random weights give masks.
    """
    from mobilesam.serve import SegmentationService

    class HeldService(SegmentationService):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.release = threading.Event()
            self.fail = False

        def _run_everything(self, entry, opts, key, ctx):
            ctx.progress(0.25, "held by the test")
            while not self.release.wait(0.05):
                ctx.check()
            if self.fail:
                raise RuntimeError("made to fail by the test")
            lenient = {**opts, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
            return super()._run_everything(entry, lenient, key, ctx)

    return HeldService(model, limits, model_name="vit_t-256", weights="random")


@pytest.fixture()
def held_server(small_model, tmp_path):
    from mobilesam.serve import ServeLimits, create_app

    # One worker and one waiting place: a third job is refused with 503.
    limits = ServeLimits(job_workers=1, job_queue=1, job_process=False)
    service = _held_service(small_model, limits)
    app = create_app(service, web_runtime=tmp_path / "no-web-runtime")
    server = _Server(app, _free_port())
    yield server.url, service
    service.release.set()
    server.stop()


def test_segment_everything_job_cancel_busy_and_image_change(
    held_server, browser_context, shared_dir
):
    httpx = pytest.importorskip("httpx")
    url, service = held_server
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    _open_photo(page, url, shared_dir / "images" / "truck.jpg", [])
    requests: list[tuple[str, str]] = []
    page.on("request", lambda r: requests.append((r.method, r.url)))
    image_id = page.evaluate("window.__mobilesam.imageId")
    page.select_option("#grid", "8")

    def start_held_job() -> str:
        page.click("#everything")
        _wait_status_of(page, "#job-stage", "held by the test")
        assert page.is_disabled("#everything"), "a second job must not start while one runs"
        return page.evaluate("window.__mobilesam.job.id")

    def job_status(job_id: str) -> str:
        return httpx.get(f"{url}/api/jobs/{job_id}").json()["status"]

    # Cancel: DELETE, the polls see the job end, nothing is painted.
    job_id = start_held_job()
    page.click("#job-cancel")
    _wait_status(page, "cancelled", timeout=30_000)
    assert ("DELETE", f"{url}/api/jobs/{job_id}") in requests
    assert job_status(job_id) == "cancelled"
    assert page.is_hidden("#job") and page.is_enabled("#everything")
    assert page.get_attribute("#mask-canvas", "data-masks") == "0"
    polls = _job_polls(requests, job_id)
    page.wait_for_timeout(800)
    assert _job_polls(requests, job_id) == polls, "the page still polls a cancelled job"

    # A failing job: its error is shown.
    service.fail = True
    service.release.set()
    page.click("#everything")
    _wait_status(page, "failed", timeout=30_000)
    assert "made to fail by the test" in page.text_content("#status")
    assert page.is_hidden("#job")
    service.fail = False
    service.release.clear()

    # A full queue: one job runs, one waits, the page's is refused with 503 and Retry-After.
    def submit():
        return httpx.post(
            f"{url}/api/images/{image_id}/everything/jobs", json={"points_per_side": 16}
        )

    held = [submit()]
    deadline = time.monotonic() + 10
    while job_status(held[0].json()["job_id"]) != "running":
        assert time.monotonic() < deadline, "the first held job did not start"
        time.sleep(0.05)
    held.append(submit())
    assert [r.status_code for r in held] == [202, 202]
    refused = submit()
    assert refused.status_code == 503
    retry_after = int(refused.headers["Retry-After"])
    page.click("#everything")
    _wait_status(page, "busy", timeout=30_000)
    status = page.text_content("#status")
    assert f"Try again in {retry_after} s" in status, status
    assert page.is_hidden("#job") and page.is_enabled("#everything")
    for r in held:
        httpx.delete(f"{url}/api/jobs/{r.json()['job_id']}")

    # Opening another image cancels the job of the one before, and its polling stops.
    job_id = start_held_job()
    page.set_input_files("#file-input", str(shared_dir / "images" / "dog.jpg"))
    page.wait_for_function("(old) => window.__mobilesam.imageId !== old", arg=image_id)
    _wait_status(page, "Click the object")
    assert ("DELETE", f"{url}/api/jobs/{job_id}") in requests
    deadline = time.monotonic() + 10
    while job_status(job_id) != "cancelled":
        assert time.monotonic() < deadline, "the old image's job was not cancelled"
        time.sleep(0.1)
    assert page.is_hidden("#job") and page.is_enabled("#everything")
    polls = _job_polls(requests, job_id)
    page.wait_for_timeout(800)
    assert _job_polls(requests, job_id) == polls, "the page still polls the old image's job"

    # After all that, a job that is let through paints its masks.
    service.release.set()
    with page.expect_response(lambda r: r.url.endswith("/everything/jobs")) as submitted:
        page.click("#everything")
    job_id = submitted.value.json()["job_id"]
    _wait_status(page, "masks (", timeout=60_000)
    assert page.get_attribute("#mask-canvas", "data-view") == "everything"
    result = httpx.get(f"{url}/api/jobs/{job_id}").json()["result"]
    assert result["count"] > 0
    assert page.get_attribute("#mask-canvas", "data-masks") == str(result["count"])
    painted = _painted_pixels(page)
    assert 0 < painted <= sum(m["area"] for m in result["masks"])
    assert not errors, errors
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


def _object_names(page) -> list[str]:
    return page.locator("#object-list li .name").all_text_contents()


def _wait_names(page, names: list[str]) -> None:
    """Wait until the object list shows ``names`` (in any order)."""
    try:
        page.wait_for_function(
            "(want) => [...document.querySelectorAll('#object-list li .name')]"
            ".map((e) => e.textContent).sort().join('|') === want",
            arg="|".join(sorted(names)),
            timeout=30_000,
        )
    except Exception:  # noqa: BLE001 - playwright's TimeoutError
        status = page.text_content("#status")
        pytest.fail(f"objects {_object_names(page)} are not {names}; status: {status!r}")


def test_undo_redo(server_url, browser_context, shared_dir):
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    _open_photo(page, server_url, shared_dir / "images" / "dog.jpg", [])
    canvas = page.locator("#prompt-canvas")
    box = canvas.bounding_box()
    labels = "() => window.__mobilesam.prompts.map((p) => p.label)"

    def click(fx: float, fy: float, **kw) -> None:
        canvas.click(position={"x": box["width"] * fx, "y": box["height"] * fy}, **kw)

    def wait_labels(want: list[int]) -> None:
        page.wait_for_function(f"({labels})().join() === {json.dumps(','.join(map(str, want)))}")

    # Points: undo takes the last one back, redo (either key) returns it in order.
    assert page.is_disabled("#redo")
    click(0.45, 0.55)
    click(0.1, 0.1, button="right")
    wait_labels([1, 0])
    page.keyboard.press("Control+z")
    wait_labels([1])
    assert page.is_enabled("#redo")
    page.keyboard.press("Control+Shift+Z")
    wait_labels([1, 0])
    page.keyboard.press("Control+z")
    page.keyboard.press("Control+z")
    wait_labels([])
    page.keyboard.press("Control+y")
    wait_labels([1])
    page.click("#redo")
    wait_labels([1, 0])
    assert page.is_disabled("#redo")
    # A new point ends what can be redone.
    page.keyboard.press("Control+z")
    wait_labels([1])
    click(0.5, 0.5)
    wait_labels([1, 1])
    assert page.is_disabled("#redo")
    page.keyboard.press("Control+y")
    wait_labels([1, 1])

    # Objects (kept in the page): add a, add b, relabel a, delete b ...
    page.wait_for_selector("#mask-canvas[data-view='prompt']", timeout=60_000)
    page.fill("#label-input", "a")
    page.press("#label-input", "Enter")
    _wait_names(page, ["a"])
    click(0.2, 0.8)
    page.wait_for_selector("#mask-canvas[data-view='prompt']", timeout=60_000)
    page.fill("#label-input", "b")
    page.press("#label-input", "Enter")
    _wait_names(page, ["a", "b"])
    page.click("#object-list li >> nth=0")
    page.fill("#label-input", "a2")
    page.press("#label-input", "Enter")
    _wait_names(page, ["a2", "b"])
    page.click("#object-list li >> nth=1")
    page.keyboard.press("Delete")
    _wait_names(page, ["a2"])
    # ... then undo all four and redo them: b comes back under a new id and later undos and
    # redos still find it.
    for names in (["a2", "b"], ["a", "b"], ["a"], []):
        page.keyboard.press("Control+z")
        _wait_names(page, names)
    assert page.is_disabled("#undo")
    for names in (["a"], ["a", "b"], ["a2", "b"], ["a2"]):
        page.keyboard.press("Control+Shift+Z")
        _wait_names(page, names)
    assert page.is_disabled("#redo")
    page.keyboard.press("Control+z")
    _wait_names(page, ["a2", "b"])
    assert "failed" not in page.text_content("#status")
    assert not errors, errors
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
    _wait_status_of(page, "#status", text, timeout)


def _wait_status_of(page, selector: str, text: str, timeout: int = 60_000) -> None:
    """Wait until the text of ``selector`` contains ``text``; on a timeout fail with both texts."""
    try:
        page.wait_for_function(
            "([s, t]) => document.querySelector(s).textContent.includes(t)",
            arg=[selector, text],
            timeout=timeout,
        )
    except Exception:  # noqa: BLE001 - playwright's TimeoutError
        shown = page.text_content(selector)
        status = page.text_content("#status")
        pytest.fail(f"{selector} never said {text!r}: {shown!r} (status: {status!r})")


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
    # Undo and redo of the relabel go through the project's versioned updates.
    page.keyboard.press("Control+z")
    _wait_names(page, ["dog", "ball"])
    page.keyboard.press("Control+Shift+Z")
    _wait_names(page, ["puppy", "ball"])
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
