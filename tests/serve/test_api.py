"""The HTTP API: every endpoint, and a JSON 4xx (never a 5xx) for every kind of bad input."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from mobilesam.serve import ServeLimits, create_app  # noqa: E402
from mobilesam.serve.service import SegmentationService  # noqa: E402


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with almost no pixel data (a "bomb")."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def image(dog_image) -> np.ndarray:
    return np.ascontiguousarray(dog_image[::2, ::2])  # 267x400: keeps the tests quick


@pytest.fixture(scope="module")
def client(small_model):
    app = create_app(small_model, ServeLimits(max_points=8), model_name="small", weights="random")
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def image_id(client, image) -> str:
    r = client.post("/api/images", files={"file": ("dog.png", _png(image), "image/png")})
    assert r.status_code == 201, r.text
    return r.json()["image_id"]


def _prompt(client, image_id, **body):
    return client.post(f"/api/images/{image_id}/predict", json=body)


def _assert_error(r, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "detail"} and body["detail"], body
    if code is not None:
        assert body["error"] == code, body
    return body


# ---------------------------------------------------------------------- health / docs / page
def test_health(client):
    r = client.get("/health")
    assert r.status_code == 200
    h = r.json()
    assert h["status"] == "ok" and h["model"] == "small" and h["weights"] == "random"
    assert h["image_size"] == 256 and h["mask_input_size"] == 64
    assert h["limits"]["max_points"] == 8


def test_docs_and_openapi(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for p in (
        "/health",
        "/api/images",
        "/api/images/{image_id}/predict",
        "/api/images/{image_id}/everything",
        "/api/images/{image_id}/embedding",
    ):
        assert p in paths


def test_page_and_static_files_are_local(client):
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "/static/app.js" in r.text
    from mobilesam.serve.app import STATIC_DIR

    names = sorted(p.name for p in STATIC_DIR.iterdir())
    assert {"index.html", "app.js", "rle.js", "style.css"} <= set(names)
    for name in names:
        text = (STATIC_DIR / name).read_text()
        assert "http://" not in text and "https://" not in text, f"{name} refers to the network"
        assert client.get(f"/static/{name}").status_code == 200


def test_unknown_route_and_method_are_json(client):
    _assert_error(client.get("/nope"), 404, "not_found")
    _assert_error(client.put("/api/images"), 405, "method_not_allowed")


# ---------------------------------------------------------------------- uploads
def test_upload_is_cached_by_content(client, image, image_id):
    from mobilesam.inference.cache import image_digest

    assert image_id == image_digest(image)
    r = client.post("/api/images", content=_png(image), headers={"content-type": "image/png"})
    assert r.status_code == 201
    info = r.json()
    assert info["image_id"] == image_id and info["cached"] is True
    assert (info["height"], info["width"]) == image.shape[:2]
    assert tuple(info["input_size"]) == (171, 256)
    # The same pixels in another lossless format map to the same id.
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="BMP")
    r = client.post("/api/images", files={"file": ("dog.bmp", buf.getvalue(), "image/bmp")})
    assert r.json()["image_id"] == image_id
    r = client.get(f"/api/images/{image_id}")
    assert r.status_code == 200 and r.json()["width"] == image.shape[1]


def test_upload_applies_exif_orientation(client):
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:, :20] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", exif=exif.tobytes())
    r = client.post("/api/images", files={"file": ("r.jpg", buf.getvalue(), "image/jpeg")})
    assert r.status_code == 201
    assert (r.json()["width"], r.json()["height"]) == (20, 40)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_upload_other_modes(client, mode):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 32, 3), np.uint8))
    buf = io.BytesIO()
    img.convert(mode).save(buf, format="PNG")
    r = client.post("/api/images", files={"file": ("x.png", buf.getvalue(), "image/png")})
    assert r.status_code == 201 and r.json()["width"] == 32


def test_upload_errors(client, image):
    png = _png(image)
    _assert_error(client.post("/api/images", files={"file": ("e.png", b"", "image/png")}), 400)
    _assert_error(
        client.post("/api/images", files={"file": ("t.txt", b"hello", "text/plain")}),
        400,
        "not_an_image",
    )
    _assert_error(
        client.post("/api/images", files={"file": ("t.png", png[: len(png) // 2], "image/png")}),
        400,
        "bad_image",
    )
    _assert_error(
        client.post("/api/images", files={"picture": ("x.png", png, "image/png")}),
        400,
        "missing_file",
    )
    _assert_error(client.post("/api/images", files={"file": (None, "text")}), 400, "missing_file")
    _assert_error(client.post("/api/images", data={"file": "not a file"}), 415)
    _assert_error(client.post("/api/images", json={"image": "x"}), 415)
    _assert_error(client.post("/api/images", content=b""), 400, "empty_upload")
    for ctype in ("multipart/form-data", "multipart/form-data; boundary=xyz"):
        _assert_error(
            client.post("/api/images", content=b"junk", headers={"content-type": ctype}), 400
        )


def test_model_factory_is_called_once_when_first_needed(small_model):
    calls = []

    def factory():
        calls.append(1)
        return small_model

    with TestClient(create_app(factory)) as c:
        assert calls == []
        assert c.get("/health").json()["image_size"] == 256
        assert c.get("/health").status_code == 200
        assert calls == [1]


@pytest.mark.parametrize("size", [(5000, 5000), (30000, 30000), (1, 2**31 - 1)])
def test_decompression_bombs_refused(client, size):
    data = _png_header_only(*size)
    assert len(data) < 200
    body = _assert_error(
        client.post("/api/images", files={"file": ("bomb.png", data, "image/png")}),
        413,
        "image_too_large",
    )
    assert "pixels" in body["detail"]


def test_body_and_pixel_limits(small_model, image):
    service = SegmentationService(
        small_model, ServeLimits(max_upload_bytes=20_000, max_pixels=5000)
    )
    with TestClient(create_app(service)) as c:
        big = _png(image)
        assert len(big) > 100_000  # beyond the body limit (20,000 + multipart allowance)
        # declared length
        _assert_error(
            c.post("/api/images", content=big, headers={"content-type": "image/png"}), 413
        )
        # streamed without a length (chunked)
        chunks = (big[i : i + 8192] for i in range(0, len(big), 8192))
        _assert_error(
            c.post("/api/images", content=chunks, headers={"content-type": "image/png"}), 413
        )
        _assert_error(
            c.post("/api/images", files={"file": ("x.png", big, "image/png")}),
            413,
            "body_too_large",
        )
        # within the body allowance but over the file limit
        mid = c.post("/api/images", content=b"x" * 50_000, headers={"content-type": "image/png"})
        _assert_error(mid, 413, "body_too_large")
        small = _png(image[:100, :100])  # 10,000 pixels > 5,000
        assert len(small) < 20_000
        _assert_error(
            c.post("/api/images", files={"file": ("x.png", small, "image/png")}),
            413,
            "image_too_large",
        )


# ---------------------------------------------------------------------- prompts
@pytest.mark.parametrize("decoder", ["exact", "fast"])
def test_predict_matches_the_predictor(decoder, image, small_model):
    from pycocotools import mask as mask_utils

    from mobilesam import SamPredictor

    service = SegmentationService(small_model, ServeLimits(max_points=8), decoder=decoder)
    image_id = service.add_array(image)[0].image_id
    with TestClient(create_app(service)) as client:
        r = _prompt(client, image_id, points=[[180, 150], [40, 30]], labels=[1, 0])
        assert r.status_code == 200, r.text
        out = r.json()
        assert client.get("/health").json()["decoder"] == decoder
    assert out["width"] == 400 and out["height"] == 267 and len(out["masks"]) == 3

    predictor = SamPredictor(small_model)
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(np.array([[180, 150], [40, 30]]), np.array([1, 0]))
    # The exact decoder is SamPredictor's bit for bit; the fast one agrees within its tolerance
    # (its sums are reordered: a pixel whose logit is within rounding of 0 may flip).
    tol = 1e-6 if decoder == "exact" else 1e-4
    np.testing.assert_allclose([m["score"] for m in out["masks"]], scores, rtol=tol, atol=tol)
    assert out["best"] == int(np.argmax(scores))
    for m, want in zip(out["masks"], masks):
        png = np.asarray(Image.open(io.BytesIO(base64.b64decode(m["png"]))).convert("L")) > 127
        rle = mask_utils.decode({"size": m["rle"]["size"], "counts": m["rle"]["counts"].encode()})
        np.testing.assert_array_equal(png, rle.astype(bool))
        if decoder == "fast":
            assert np.count_nonzero(png != want) <= 0.001 * want.size
            want = png
        np.testing.assert_array_equal(png, want)
        assert m["area"] == int(want.sum())
        if m["area"]:
            ys, xs = np.nonzero(want)
            assert m["bbox"] == [
                xs.min(),
                ys.min(),
                xs.max() - xs.min() + 1,
                ys.max() - ys.min() + 1,
            ]


def test_predict_variants(client, image_id):
    r = _prompt(client, image_id, box=[50, 40, 300, 200], multimask=False)
    assert r.status_code == 200 and len(r.json()["masks"]) == 1
    r = _prompt(client, image_id, points=[[100, 100]], labels=[1], box=[50, 40, 300, 200])
    assert r.status_code == 200
    r = _prompt(client, image_id, points=[[100, 100]], labels=[1], formats=["rle"])
    assert r.status_code == 200
    assert all(m["png"] is None and m["rle"] for m in r.json()["masks"])
    # edges of the image are valid coordinates
    assert _prompt(client, image_id, points=[[0, 0], [400, 267]], labels=[1, 1]).status_code == 200


def test_predict_with_previous_logits(client, image_id):
    r = _prompt(client, image_id, points=[[100, 100]], labels=[1], return_logits=True)
    out = r.json()
    assert out["low_res_shape"] == [3, 64, 64]
    low = np.frombuffer(base64.b64decode(out["low_res_logits"]), "<f4").reshape(3, 64, 64)
    best = low[out["best"]][None]
    as_b64 = base64.b64encode(best.astype("<f4").tobytes()).decode()
    body = {"points": [[100, 100], [200, 150]], "labels": [1, 1], "multimask": False}
    r1 = _prompt(client, image_id, mask_input=as_b64, **body)
    r2 = _prompt(client, image_id, mask_input=best.tolist(), **body)
    assert r1.status_code == r2.status_code == 200
    assert r1.json()["masks"][0]["rle"] == r2.json()["masks"][0]["rle"]
    _assert_error(_prompt(client, image_id, mask_input=best[:, :10].tolist(), **body), 400)
    _assert_error(_prompt(client, image_id, mask_input=as_b64[:-8], **body), 400)
    _assert_error(_prompt(client, image_id, mask_input="@@@@", **body), 400)


@pytest.mark.parametrize(
    "body, status",
    [
        ({}, 400),
        ({"points": [[10, 10]]}, 400),
        ({"points": [[10, 10]], "labels": [1, 0]}, 400),
        ({"labels": [1]}, 400),
        ({"points": [[10, 10]], "labels": [2]}, 400),
        ({"points": [[10, 10]], "labels": [10**30]}, 400),
        ({"points": [[10, 10]], "labels": [1], "box": [0, 0, 10**30, 1]}, 400),
        ({"points": [[-1, 10]], "labels": [1]}, 400),
        ({"points": [[10, 268]], "labels": [1]}, 400),
        ({"points": [[1e300, 1]], "labels": [1]}, 400),
        ({"points": [[i, i] for i in range(9)], "labels": [1] * 9}, 400),
        ({"box": [100, 100, 50, 50]}, 400),
        ({"box": [0, 0, 500, 100]}, 400),
        ({"points": "here", "labels": [1]}, 422),
        ({"points": [[1, 2, 3]], "labels": [1]}, 422),
        ({"points": [[1, 2]], "labels": ["one"]}, 422),
        ({"box": [1, 2, 3]}, 422),
        ({"points": [[1, 2]], "labels": [1], "multimask": "sometimes"}, 422),
        ({"points": [[1, 2]], "labels": [1], "formats": ["jpeg"]}, 422),
        ({"points": [[1, 2]], "labels": [1], "colour": "red"}, 422),
        ({"points": [[1, 2]], "labels": [1], "mask_input": 5}, 422),
    ],
)
def test_bad_prompts(client, image_id, body, status):
    _assert_error(_prompt(client, image_id, **body), status)


@pytest.mark.parametrize(
    "body, args",
    [
        ({"box": [100, 100, 50, 50]}, {"box": np.array([100.0, 100, 50, 50])}),
        (
            {"points": [[10, 10]], "labels": [2]},
            {"point_coords": np.array([[10.0, 10]]), "point_labels": np.array([2])},
        ),
        (
            {"points": [[10, 10]], "labels": [1, 0]},
            {"point_coords": np.array([[10.0, 10]]), "point_labels": np.array([1, 0])},
        ),
        ({"points": [[10, 10]]}, {"point_coords": np.array([[10.0, 10]])}),
        (
            {"box": [1, 2, 30, 40], "mask_input": [[[0.0] * 3] * 3]},
            {"box": np.array([1.0, 2, 30, 40]), "mask_input": np.zeros((1, 3, 3), np.float32)},
        ),
    ],
)
def test_predictor_value_errors_become_bad_prompt(client, image_id, small_model, body, args):
    """The predictor checks prompts; the service answers its ValueError as a 400 bad_prompt."""
    from mobilesam import SamPredictor

    predictor = SamPredictor(small_model)
    predictor.set_image(np.zeros((267, 400, 3), np.uint8))
    with pytest.raises(ValueError) as e:
        predictor.predict(**args)
    err = _assert_error(_prompt(client, image_id, **body), 400, "bad_prompt")
    assert err["detail"] == str(e.value)


def test_service_policies_are_bad_prompt(client, image_id):
    """Limits of the service itself: a prompt, max_points (8 here), inside the image."""
    for body, words in [
        ({}, "at least one"),
        ({"points": [[i, i] for i in range(9)], "labels": [1] * 9}, "at most 8"),
        ({"points": [[10, 268]], "labels": [1]}, "outside the 400x267 image"),
        ({"box": [0, 0, 401, 10]}, "outside the 400x267 image"),
    ]:
        assert (
            words in _assert_error(_prompt(client, image_id, **body), 400, "bad_prompt")["detail"]
        )


def test_ignore_label_is_passed_to_the_predictor(client, image_id):
    """-1 (an ignored point) is valid for the predictor, so for the service too."""
    r = _prompt(client, image_id, points=[[10, 10], [100, 100]], labels=[-1, 1])
    assert r.status_code == 200, r.text


def test_mask_input_beyond_float_range_is_bad_prompt(client, image_id):
    raw = '{"points": [[10, 10]], "labels": [1], "mask_input": [[[1' + "0" * 400 + "]]]}"
    headers = {"content-type": "application/json"}
    r = client.post(f"/api/images/{image_id}/predict", content=raw, headers=headers)
    _assert_error(r, 400, "bad_prompt")


def test_bad_json_bodies(client, image_id):
    url = f"/api/images/{image_id}/predict"
    headers = {"content-type": "application/json"}
    for raw in [b"{", b"[1, 2]", b'{"points": [[NaN, 1]], "labels": [1]}', b"null", b"\xff\xfe"]:
        _assert_error(client.post(url, content=raw, headers=headers), 422)
    _assert_error(
        client.post(url, content=b"points=1", headers={"content-type": "text/plain"}), 422
    )


def test_unknown_image_id(client):
    for path in ["", "/embedding"]:
        _assert_error(client.get(f"/api/images/{'0' * 32}{path}"), 404, "unknown_image")
    _assert_error(_prompt(client, "nope", points=[[1, 1]], labels=[1]), 404, "unknown_image")
    _assert_error(client.post("/api/images/nope/everything", json={}), 404, "unknown_image")
    _assert_error(client.delete("/api/images/nope"), 404, "unknown_image")


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=12,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.dictionaries(
        st.sampled_from(["points", "labels", "box", "multimask", "mask_input", "formats", "x"]),
        _json_values,
        max_size=4,
    )
)
def test_random_prompt_bodies_never_give_5xx(client, image_id, body):
    raw = json.dumps(body, allow_nan=True)
    r = client.post(
        f"/api/images/{image_id}/predict", content=raw, headers={"content-type": "application/json"}
    )
    assert r.status_code in (200, 400, 404, 413, 422), (body, r.text)
    if r.status_code != 200:
        _assert_error(r, r.status_code)


# ---------------------------------------------------------------------- embedding / cache
def test_embedding_download(client, image_id, image, small_model):
    from mobilesam import SamPredictor

    predictor = SamPredictor(small_model)
    predictor.set_image(image)
    want = predictor.get_image_embedding().numpy()
    r = client.get(f"/api/images/{image_id}/embedding")
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    arr = np.load(io.BytesIO(r.content), allow_pickle=False)
    assert arr.dtype == np.float32 and arr.shape == (1, 256, 16, 16)
    np.testing.assert_allclose(arr, want, atol=1e-5)
    assert r.headers["x-embedding-shape"] == "1,256,16,16"
    assert r.headers["x-original-size"] == "267,400" and r.headers["x-input-size"] == "171,256"
    r16 = client.get(f"/api/images/{image_id}/embedding?dtype=float16&format=raw")
    raw = np.frombuffer(r16.content, "<f2").reshape(1, 256, 16, 16)
    np.testing.assert_allclose(raw, want, atol=2e-3, rtol=2e-3)
    _assert_error(client.get(f"/api/images/{image_id}/embedding?dtype=int8"), 400, "bad_dtype")
    _assert_error(client.get(f"/api/images/{image_id}/embedding?format=zip"), 400, "bad_format")


def test_delete_and_eviction(small_model, image):
    one = image[:64, :64].copy()
    two = image[64:128, 64:128].copy()
    entry_bytes = 64 * 64 * 3 + 256 * 16 * 16 * 4
    service = SegmentationService(small_model, ServeLimits(cache_bytes=entry_bytes + 10))
    with TestClient(create_app(service)) as c:
        id1 = c.post("/api/images", files={"file": ("1.png", _png(one), "image/png")}).json()
        id2 = c.post("/api/images", files={"file": ("2.png", _png(two), "image/png")}).json()
        assert not id1["cached"] and not id2["cached"]
        body = {"points": [[10, 10]], "labels": [1]}
        _assert_error(_prompt(c, id1["image_id"], **body), 404, "unknown_image")  # evicted
        assert _prompt(c, id2["image_id"], **body).status_code == 200
        stats = c.get("/health").json()["cache"]
        assert stats["entries"] == 1 and stats["evictions"] == 1 and stats["bytes"] == entry_bytes
        assert c.delete(f"/api/images/{id2['image_id']}").status_code == 204
        _assert_error(_prompt(c, id2["image_id"], **body), 404)
        assert c.get("/health").json()["cache"]["bytes"] == 0


# ---------------------------------------------------------------------- segment everything
def test_segment_everything(client, image_id):
    from pycocotools import mask as mask_utils

    body = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    r = client.post(f"/api/images/{image_id}/everything", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["count"] == len(out["masks"]) > 0
    areas = [m["area"] for m in out["masks"]]
    assert areas == sorted(areas, reverse=True)
    for m in out["masks"]:
        seg = m["segmentation"]
        assert seg["size"] == [267, 400]
        decoded = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()})
        assert int(decoded.sum()) == m["area"]
        assert 0.0 <= m["stability_score"] <= 1.0
    again = client.post(f"/api/images/{image_id}/everything", json=body).json()
    assert again["masks"] == out["masks"]  # served from the per-image result cache


@pytest.mark.parametrize(
    "body, status",
    [
        ({"points_per_side": 0}, 422),
        ({"points_per_side": 65}, 400),
        ({"points_per_side": "many"}, 422),
        ({"pred_iou_thresh": 2.0}, 422),
        ({"crop_n_layers": 3}, 422),
    ],
)
def test_everything_bad_options(client, image_id, body, status):
    _assert_error(client.post(f"/api/images/{image_id}/everything", json=body), status)


def test_everything_options_follow_amg_options(client):
    """Names, defaults and bounds of the request body come from AmgOptions (one place)."""
    from mobilesam.inference.amg_options import AmgOptions
    from mobilesam.serve.everything import EVERYTHING_OPTIONS

    schema = client.get("/openapi.json").json()["components"]["schemas"]["EverythingRequest"]
    assert tuple(schema["properties"]) == EVERYTHING_OPTIONS
    assert schema["additionalProperties"] is False
    defaults = AmgOptions()
    for name, prop in schema["properties"].items():
        assert prop["default"] == getattr(defaults, name), name
        assert prop["type"] == (
            "integer" if name in ("points_per_side", "min_mask_region_area") else "number"
        )
    assert schema["properties"]["points_per_side"]["minimum"] == 1
    assert schema["properties"]["pred_iou_thresh"]["maximum"] == 1.0


def test_everything_builds_the_fast_generator_with_amg_defaults(monkeypatch, small_model, image):
    import mobilesam.inference.amg as amg
    from mobilesam.inference.amg_options import AmgOptions
    from mobilesam.serve.codec import mask_to_rle
    from mobilesam.serve.everything import EVERYTHING_OPTIONS

    seen: list[dict] = []

    class Recorder:
        # What the service's job reads of a generator to count its batches and watch them.
        crop_n_layers, crop_overlap_ratio, points_per_batch = 0, 0.5, 64
        point_grids = [np.zeros((1, 2))]

        def __init__(self, model, **kwargs):
            seen.append(kwargs)
            encoder = SimpleNamespace(image_size=1024, image_format="RGB")
            self.predictor = SimpleNamespace(
                encoder=encoder, prepare_image=lambda rgb: (rgb, rgb.shape[:2])
            )

        def generate(self, rgb):
            h, w = rgb.shape[:2]
            m = np.zeros((h, w), bool)
            m[:10, :20] = True
            return [
                {
                    "segmentation": mask_to_rle(m),
                    "area": 200,
                    "bbox": [0, 0, 20, 10],
                    "predicted_iou": 0.9,
                    "stability_score": 0.97,
                    "point_coords": [[5.0, 5.0]],
                    "crop_box": [0, 0, w, h],
                }
            ]

    monkeypatch.setattr(amg, "SamAutomaticMaskGenerator", Recorder)
    service = SegmentationService(small_model, ServeLimits(job_process=False))
    image_id = service.add_array(image[:50, :60].copy())[0].image_id
    with TestClient(create_app(service)) as c:
        r = c.post(f"/api/images/{image_id}/everything")
        assert r.status_code == 200, r.text
        assert r.json()["masks"][0]["segmentation"]["size"] == [50, 60]
        assert c.post(f"/api/images/{image_id}/everything", json={}).status_code == 200
        r = c.post(f"/api/images/{image_id}/everything", json={"points_per_side": 3})
        assert r.status_code == 200
    want = {name: getattr(AmgOptions(), name) for name in EVERYTHING_OPTIONS}
    assert seen[0] == {"fast": True, "output_mode": "coco_rle", **want}
    assert len(seen) == 2  # the empty body hit the per-image result cache
    assert seen[1]["points_per_side"] == 3 and type(seen[1]["points_per_side"]) is int
