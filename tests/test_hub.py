"""mobilesam.hub: the weights cache, resolving a checkpoint, atomic and checked downloads.

No network: downloads come from ``file://`` addresses or a stand-in ``urlopen``.
"""

from __future__ import annotations

import io
import urllib.request
from pathlib import Path

import pytest
import torch

from mobilesam import hub


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "cache"
    monkeypatch.setenv("MOBILESAM_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> Path:
    """A small but real checkpoint (a state dict of tensors) to download."""
    path = tmp_path_factory.mktemp("served") / "w.pt"
    torch.save({"layer.weight": torch.arange(6.0).reshape(2, 3)}, path)
    return path


def test_cache_dir_from_env_or_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MOBILESAM_HOME", "~/weights")
    assert hub.cache_dir() == tmp_path / "home" / "weights"
    monkeypatch.delenv("MOBILESAM_HOME")
    assert hub.cache_dir() == tmp_path / "home" / ".cache" / "mobilesam"


def test_cached_path_and_names(cache):
    assert hub.cached_path("vit_t") == cache / "mobile_sam.pt"
    assert hub.cached_path("default") == cache / "sam_vit_h_4b8939.pth"
    with pytest.raises(KeyError, match="no official weights for model 'shapes_teacher'"):
        hub.cached_path("shapes_teacher")


def test_resolve_prefers_the_given_file_then_the_cache(cache, tmp_path, monkeypatch):
    def no_download(*a, **k):
        raise AssertionError("must not download")

    monkeypatch.setattr(hub, "download", no_download)
    given = tmp_path / "mine.pt"
    given.write_bytes(b"x")
    assert hub.resolve_checkpoint("vit_t", given) == given
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        hub.resolve_checkpoint("vit_t", tmp_path / "nope.pt")
    cache.mkdir()
    (cache / "mobile_sam.pt").write_bytes(b"x")
    assert hub.resolve_checkpoint("vit_t") == cache / "mobile_sam.pt"


def test_offline_without_cached_weights_says_what_to_do(cache):
    with pytest.raises(hub.WeightsUnavailableError) as info:
        hub.resolve_checkpoint("vit_b", allow_download=False)
    msg = str(info.value)
    assert "sam_vit_b_01ec64.pth" in msg and str(cache / "sam_vit_b_01ec64.pth") in msg
    assert "mobilesam weights download vit_b" in msg and "--checkpoint" in msg


def test_download_from_a_file_url_lands_whole_in_the_cache(cache, weights_file):
    path = hub.download("vit_t", url=weights_file.as_uri(), progress=False)
    assert path == cache / "mobile_sam.pt"
    assert path.read_bytes() == weights_file.read_bytes()
    assert [p.name for p in cache.iterdir()] == ["mobile_sam.pt"]  # no temporary file left


def test_a_download_that_is_not_a_checkpoint_is_refused(cache, tmp_path, weights_file):
    page = tmp_path / "error.html"
    page.write_text("<html>404 not found</html>")
    with pytest.raises(hub.WeightsUnavailableError, match="not a valid checkpoint"):
        hub.download("vit_t", url=page.as_uri(), progress=False)
    assert list(cache.iterdir()) == []
    # an existing good file survives a refused re-download
    hub.download("vit_t", url=weights_file.as_uri(), progress=False)
    with pytest.raises(hub.WeightsUnavailableError):
        hub.download("vit_t", url=page.as_uri(), progress=False)
    assert (cache / "mobile_sam.pt").read_bytes() == weights_file.read_bytes()
    assert [p.name for p in cache.iterdir()] == ["mobile_sam.pt"]


def test_unreachable_address_names_the_file_and_where_to_put_it(cache, tmp_path):
    with pytest.raises(hub.WeightsUnavailableError) as info:
        hub.download("vit_t", url=(tmp_path / "absent.pt").as_uri(), progress=False)
    msg = str(info.value)
    assert "mobile_sam.pt" in msg and str(cache / "mobile_sam.pt") in msg
    assert "MOBILESAM_HOME" in msg and "--checkpoint" in msg
    assert list(cache.iterdir()) == []


def test_a_connection_dropped_mid_download_leaves_nothing(cache, weights_file, monkeypatch):
    class Dropping(io.BytesIO):
        headers = {"Content-Length": "1000000"}

        def read(self, n: int = -1) -> bytes:
            if self.tell() > 0:
                raise ConnectionResetError("connection reset by peer")
            return super().read(16)

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Dropping(b"x" * 64))
    with pytest.raises(hub.WeightsUnavailableError, match="connection reset"):
        hub.download("vit_t", url="https://example.invalid/w.pt", progress=False)
    assert list(cache.iterdir()) == []
