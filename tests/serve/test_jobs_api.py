"""Segment everything as jobs over HTTP, and prompts that do not wait behind them."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

import mobilesam.serve.everything as everything_module  # noqa: E402
from mobilesam.serve import ServeLimits, create_app  # noqa: E402
from mobilesam.serve.everything import (  # noqa: E402
    EVERYTHING_DEFAULTS,
    count_batches,
    make_generator,
    watch_batches,
)
from mobilesam.serve.service import SegmentationService  # noqa: E402

FINAL = {"done", "failed", "cancelled"}


@pytest.fixture(scope="module")
def image(dog_image) -> np.ndarray:
    return np.ascontiguousarray(dog_image[::4, ::4])  # 134x200


def _service(model, image, **limits):
    service = SegmentationService(model, ServeLimits(**limits), weights="random")
    return service, service.add_array(image)[0].image_id


# At 64 points a side a job decodes 64 batches: seconds of work on the small model, long
# enough to watch, cancel or queue behind.
LONG = {"points_per_side": 64}
# Thresholds off: the random-weight model's masks all survive, so results have something in them.
SMALL = {"points_per_side": 8, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


def _poll(c, job_id: str, until=lambda b: b["status"] in FINAL, timeout: float = 60.0) -> dict:
    end = time.monotonic() + timeout
    while True:
        r = c.get(f"/api/jobs/{job_id}")
        assert r.status_code == 200, r.text
        body = r.json()
        if until(body):
            return body
        assert time.monotonic() < end, body
        time.sleep(0.02)


def _error(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "detail"} and body["error"] == code, body
    return body


@pytest.mark.parametrize("job_process", [True, False], ids=["process", "thread"])
def test_job_result_is_what_the_generator_gives(small_model, image, job_process):
    service, image_id = _service(small_model, image, job_process=job_process)
    with TestClient(create_app(service)) as c:
        r = c.post(f"/api/images/{image_id}/everything/jobs", json=SMALL)
        assert r.status_code == 202, r.text
        job = r.json()
        assert r.headers["location"] == f"/api/jobs/{job['job_id']}"
        assert job["kind"] == "everything" and job["image_id"] == image_id
        assert job["options"]["points_per_side"] == 8 and job["result"] is None
        body = _poll(c, job["job_id"])
        assert body["status"] == "done" and body["progress"] == {"fraction": 1.0, "stage": "done"}
        assert body["started"] >= body["created"] and body["finished"] >= body["started"]
        result = body["result"]
        assert (result["width"], result["height"]) == (200, 134)
        # The synchronous route answers the same records (from the per-image cache now).
        sync = c.post(f"/api/images/{image_id}/everything", json=SMALL).json()
        assert sync["masks"] == result["masks"] and sync["count"] == result["count"]
        # A cached result makes a job that is done at once.
        again = c.post(f"/api/images/{image_id}/everything/jobs", json=SMALL)
        assert again.status_code == 202 and again.json()["status"] == "done"
        assert again.json()["result"]["masks"] == result["masks"]
    direct = make_generator(small_model, {**EVERYTHING_DEFAULTS, **SMALL})
    anns = direct.generate(image)
    assert result["count"] == len(anns) > 0
    assert sorted(a["area"] for a in anns) == sorted(m["area"] for m in result["masks"])
    direct_rles = sorted(a["segmentation"]["counts"] for a in anns)
    assert direct_rles == sorted(m["segmentation"]["counts"] for m in result["masks"])


@pytest.mark.parametrize("fast", [True, False])
def test_batches_are_counted_and_watched(small_model, image, fast):
    opts = {**EVERYTHING_DEFAULTS, "points_per_side": 8, "pred_iou_thresh": 0.99}
    gen = make_generator(small_model, opts)
    gen.fast = fast
    gen.points_per_batch = 16
    calls = []
    watch_batches(gen, lambda: calls.append(1))
    gen.generate(image)
    assert count_batches(gen, image.shape[:2]) == 4 == len(calls)


@pytest.mark.parametrize("job_process", [True, False], ids=["process", "thread"])
def test_progress_and_cancel_of_a_running_job(small_model, image, job_process):
    service, image_id = _service(small_model, image, job_process=job_process)
    with TestClient(create_app(service)) as c:
        job = c.post(f"/api/images/{image_id}/everything/jobs", json=LONG).json()
        seen = _poll(c, job["job_id"], until=lambda b: b["progress"]["fraction"] > 0)
        assert seen["status"] == "running" and seen["progress"]["stage"].startswith("decoding")
        r = c.delete(f"/api/jobs/{job['job_id']}")
        assert r.status_code == 200 and r.json()["cancel_requested"] is True
        body = _poll(c, job["job_id"])
        assert body["status"] == "cancelled" and body["result"] is None
        assert body["progress"]["fraction"] < 1.0


def test_full_queue_is_503_with_retry_after(small_model, image):
    service, image_id = _service(small_model, image, job_workers=1, job_queue=1)
    url = f"/api/images/{image_id}/everything/jobs"
    with TestClient(create_app(service)) as c:
        running = c.post(url, json=LONG).json()
        _poll(c, running["job_id"], until=lambda b: b["status"] == "running")
        queued = c.post(url, json={"points_per_side": 63}).json()
        assert queued["status"] == "queued"
        r = c.post(url, json={"points_per_side": 62})
        _error(r, 503, "queue_full")
        assert int(r.headers["retry-after"]) >= 1
        # A queued job cancelled never starts, and frees its place.
        assert c.delete(f"/api/jobs/{queued['job_id']}").json()["status"] == "cancelled"
        assert service.jobs.stats()["queued"] == 0
        c.delete(f"/api/jobs/{running['job_id']}")
        assert _poll(c, running["job_id"])["status"] == "cancelled"


def test_prompts_do_not_wait_for_a_running_job(small_model, image):
    service, image_id = _service(small_model, image)
    with TestClient(create_app(service)) as c:
        job = c.post(f"/api/images/{image_id}/everything/jobs", json=LONG).json()
        _poll(c, job["job_id"], until=lambda b: b["progress"]["fraction"] > 0)
        assert service._lock.acquire(blocking=False)  # the job does not hold the prompt lock
        service._lock.release()
        r = c.post(f"/api/images/{image_id}/predict", json={"points": [[50, 50]], "labels": [1]})
        assert r.status_code == 200, r.text
        assert c.get(f"/api/jobs/{job['job_id']}").json()["status"] == "running"
        c.delete(f"/api/jobs/{job['job_id']}")


def test_jobs_use_their_own_torch_thread_count(small_model, image):
    import torch

    service, _ = _service(small_model, image, job_threads=1)
    before = torch.get_num_threads()
    job = service.jobs.submit("t", lambda ctx: torch.get_num_threads())
    assert job.wait(10) and job.result == 1
    assert torch.get_num_threads() == before
    seen = []

    def prompt_thread():  # a fresh thread, as a request thread may be
        with service._prompt_model():
            seen.append(torch.get_num_threads())

    t = threading.Thread(target=prompt_thread)
    t.start()
    t.join()
    assert seen == [service._prompt_threads]


def test_prompt_that_cannot_get_the_model_in_time_is_503(small_model, image):
    service, image_id = _service(small_model, image, model_wait_s=1)
    with TestClient(create_app(service)) as c:
        with service._lock:
            t0 = time.monotonic()
            r = c.post(
                f"/api/images/{image_id}/predict", json={"points": [[50, 50]], "labels": [1]}
            )
            waited = time.monotonic() - t0
        _error(r, 503, "model_busy")
        assert r.headers["retry-after"] == "1" and 0.9 < waited < 5
        assert (
            c.post(
                f"/api/images/{image_id}/predict", json={"points": [[50, 50]], "labels": [1]}
            ).status_code
            == 200
        )


def test_synchronous_everything_gives_up_after_its_deadline(small_model, image):
    service, image_id = _service(small_model, image, everything_wait_s=1)
    with TestClient(create_app(service)) as c:
        r = c.post(f"/api/images/{image_id}/everything", json=LONG)
        _error(r, 503, "timeout")
        assert "retry-after" in r.headers
    # The job it waited for was cancelled, not left running.
    end = time.monotonic() + 30
    while service.jobs.stats()["running"]:
        assert time.monotonic() < end
        time.sleep(0.02)


def test_failed_job_reports_its_error(monkeypatch, small_model, image):
    def broken(model, options):
        raise RuntimeError("generator broke")

    monkeypatch.setattr(everything_module, "make_generator", broken)
    service, image_id = _service(small_model, image, job_process=False)
    with TestClient(create_app(service)) as c:
        job = c.post(f"/api/images/{image_id}/everything/jobs").json()
        body = _poll(c, job["job_id"])
        assert body["status"] == "failed" and body["error"] == "RuntimeError: generator broke"


def test_job_routes_refuse_bad_input_with_json(small_model, image):
    service, image_id = _service(small_model, image)
    with TestClient(create_app(service)) as c:
        _error(c.get("/api/jobs/nope"), 404, "unknown_job")
        _error(c.delete("/api/jobs/nope"), 404, "unknown_job")
        _error(c.post("/api/images/0000/everything/jobs"), 404, "unknown_image")
        url = f"/api/images/{image_id}/everything/jobs"
        _error(c.post(url, json={"points_per_side": 65}), 400, "bad_options")
        _error(c.post(url, json={"colour": 1}), 422, "invalid_request")
        h = c.get("/health").json()
        assert h["jobs"]["workers"] >= 1 and h["limits"]["job_queue"] == 8
