"""Hub distribution: download, cache, revisions, failures, integrity and offline use, against a
fake Hub on 127.0.0.1 (tests/fakehub.py) reached through HF_ENDPOINT."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch
from torch import nn

import hyperinit
from hyperinit import hub
from hyperinit.errors import CheckpointDownloadError, CheckpointIntegrityError
from hyperinit.initialize import clear_cache
from hyperinit.modalities import MODALITIES, get_modality
from tests.fakehub import FakeHub

REFERENCE = get_modality("xray").path
XRAY = "hyperinit/hyperinit-xray"


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """A running fake Hub holding the registry's xray repo; HF env pointed at it and a temp
    cache."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    clear_cache()
    with FakeHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        server.add_folder(XRAY, "main", REFERENCE)
        yield server
    clear_cache()


def _embedded(modality: str) -> tuple[str, Path]:
    """The source string and folder of a modality's embedded checkpoint (trained or reference)."""
    entry = get_modality(modality)
    return f"embedded:{entry.embedded}", entry.path


def _tiny() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )


def _checkpoint(tmp_path: Path, seed: int, name: str) -> Path:
    torch.manual_seed(seed)
    return hyperinit.HyperInitializer(d_model=16).save_pretrained(tmp_path / name)


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_download_then_cache_hit_without_network(fake_hub):
    folder, source = hub.resolve_checkpoint("xray")
    assert source == f"hub:{XRAY}@main"
    assert Path(os.environ["HF_HUB_CACHE"]) in folder.parents
    assert (
        hub.sha256_file(folder / "model.safetensors")
        == get_modality("xray").sha256["model.safetensors"]
    )
    n = len(fake_hub.requests)
    assert n > 0
    fake_hub.server.shutdown()  # the network is gone; the pinned, verified cache is enough
    folder2, source2 = hub.resolve_checkpoint("xray")
    assert (folder2, source2) == (folder, source)
    assert len(fake_hub.requests) == n
    model = hyperinit.HyperInitializer.from_pretrained("cxr")
    assert not model.training


def test_repo_id_revision_pinning(fake_hub, tmp_path):
    v1 = _checkpoint(tmp_path, 1, "v1")
    v2 = _checkpoint(tmp_path, 2, "v2")
    commit1 = fake_hub.add_folder("lab/ct-hn", "v1", v1)
    fake_hub.add_folder("lab/ct-hn", "main", v2)
    want1 = hyperinit.HyperInitializer.from_pretrained(v1)
    want2 = hyperinit.HyperInitializer.from_pretrained(v2)
    got_main = hyperinit.HyperInitializer.from_pretrained("lab/ct-hn")
    got_v1 = hyperinit.HyperInitializer.from_pretrained("lab/ct-hn", revision="v1")
    got_commit = hyperinit.HyperInitializer.from_pretrained("lab/ct-hn", revision=commit1)
    assert _same_weights(got_main, want2) and not _same_weights(got_main, want1)
    assert _same_weights(got_v1, want1) and _same_weights(got_commit, want1)
    assert not got_v1.training
    # initialize() takes a repo id as checkpoint= too
    report = hyperinit.initialize(_tiny(), checkpoint="lab/ct-hn", seed=0)
    assert report.checkpoint == "hub:lab/ct-hn@main"


@pytest.mark.parametrize("mode", ["404", "500", "timeout", "truncate"])
def test_failures_fall_back_to_embedded(fake_hub, caplog, mode):
    fake_hub.modes["model.safetensors"] = mode
    with caplog.at_level(logging.INFO, logger="hyperinit.hub"):
        folder, source = hub.resolve_checkpoint("xray")
    assert (source, folder) == _embedded("xray")
    fallback = [r for r in caplog.records if "embedded in the package" in r.getMessage()]
    assert len(fallback) == 1 and "model.safetensors" in fallback[0].getMessage()
    # and initialize() works regardless
    report = hyperinit.initialize(_tiny(), modality="xray", seed=0)
    assert report.checkpoint.startswith(_embedded("xray")[0])


@pytest.mark.parametrize("mode", ["404", "500", "timeout", "truncate"])
def test_failures_raise_for_repo_without_embedded_copy(fake_hub, tmp_path, mode):
    fake_hub.add_folder("lab/hn", "main", _checkpoint(tmp_path, 0, "c"))
    fake_hub.modes["model.safetensors"] = mode
    with pytest.raises(CheckpointDownloadError, match=r"lab/hn@main/model\.safetensors"):
        hyperinit.HyperInitializer.from_pretrained("lab/hn")
    assert not list(Path(os.environ["HF_HUB_CACHE"]).rglob("*.safetensors"))


def test_truncated_once_is_downloaded_again(fake_hub, caplog):
    fake_hub.modes["model.safetensors"] = "truncate_once"
    with caplog.at_level(logging.WARNING, logger="hyperinit.hub"):
        _, source = hub.resolve_checkpoint("xray")
    assert source.startswith("hub:")
    assert any("trying once more" in r.getMessage() for r in caplog.records)


def test_wrong_sha256_is_never_loaded(fake_hub, caplog):
    fake_hub.modes["model.safetensors"] = "wrong"  # other bytes, consistent ETag
    with caplog.at_level(logging.WARNING, logger="hyperinit.hub"):
        _, source = hub.resolve_checkpoint("xray")
    assert source == _embedded("xray")[0]
    msgs = [r.getMessage() for r in caplog.records if "sha256" in r.getMessage()]
    assert msgs and all("model.safetensors" in m for m in msgs)
    assert len(msgs) == 2  # the first download, then one more
    assert not list(Path(os.environ["HF_HUB_CACHE"]).rglob("model.safetensors"))


def test_corrupted_body_under_true_etag_is_detected(fake_hub, tmp_path):
    fake_hub.add_folder("lab/hn", "main", _checkpoint(tmp_path, 0, "c"))
    fake_hub.modes["model.safetensors"] = "corrupt"
    with pytest.raises(CheckpointIntegrityError, match=r"model\.safetensors.*sha256"):
        hyperinit.HyperInitializer.from_pretrained("lab/hn")


def test_corrupted_cache_is_downloaded_again(fake_hub, caplog):
    folder, _ = hub.resolve_checkpoint("xray")
    blob = Path(os.path.realpath(folder / "model.safetensors"))
    data = bytearray(blob.read_bytes())
    data[-10:] = b"\x00" * 10
    blob.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="hyperinit.hub"):
        folder2, source = hub.resolve_checkpoint("xray")
    assert source.startswith("hub:")
    assert any("cached" in r.getMessage() and "sha256" in r.getMessage() for r in caplog.records)
    expected = get_modality("xray").sha256["model.safetensors"]
    assert hub.sha256_file(folder2 / "model.safetensors") == expected


def test_offline_with_cache(fake_hub, monkeypatch):
    hub.resolve_checkpoint("xray")
    n = len(fake_hub.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _, source = hub.resolve_checkpoint("xray")
    assert source.startswith("hub:") and len(fake_hub.requests) == n
    report = hyperinit.initialize(_tiny(), modality="xray", seed=0)
    assert report.checkpoint.startswith("hub:")
    assert [r.source for r in hyperinit.list_checkpoints() if r.name == "xray"] == ["cached"]


def test_offline_without_cache(fake_hub, monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with caplog.at_level(logging.INFO, logger="hyperinit.hub"):
        report = hyperinit.initialize(_tiny(), modality="us", seed=0)
    assert report.checkpoint.startswith(_embedded("us")[0])
    assert fake_hub.requests == []
    assert sum("embedded in the package" in r.getMessage() for r in caplog.records) == 1
    with pytest.raises(CheckpointDownloadError, match="HF_HUB_OFFLINE"):
        hyperinit.HyperInitializer.from_pretrained("lab/hn")
    rows = {r.name: r for r in hyperinit.list_checkpoints()}
    assert set(rows) == set(MODALITIES)
    assert rows["xray"].source == "embedded" and rows["xray"].size_bytes > 100_000


def test_no_network_at_all_falls_back_quickly(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    folder, source = hub.resolve_checkpoint("fundus")
    assert (source, folder) == _embedded("fundus")


def test_local_path_wins_and_keeps_checks(tmp_path):
    ckpt = _checkpoint(tmp_path, 0, "xray")  # a local folder named like a modality
    monkeypatch_cwd = Path.cwd()
    try:
        os.chdir(tmp_path)
        model = hyperinit.HyperInitializer.from_pretrained("xray")
    finally:
        os.chdir(monkeypatch_cwd)
    assert model.config.d_model == 16
    assert _same_weights(model, hyperinit.HyperInitializer.from_pretrained(ckpt))


def test_push_to_hub_uploads_card_config_and_weights(tmp_path, monkeypatch):
    calls = {}

    class FakeApi:
        def __init__(self, endpoint=None, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, private=None, exist_ok=False):
            calls["repo"] = (repo_id, private, exist_ok)

        def upload_folder(self, repo_id, folder_path, **kw):
            calls["files"] = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
            calls["kw"] = kw
            return "commit-info"

    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    hn = hyperinit.HyperInitializer(d_model=16)
    assert hn.push_to_hub("me/my-hn", private=True, token="t") == "commit-info"
    assert calls["repo"] == ("me/my-hn", True, True)
    assert set(calls["files"]) == {"config.json", "model.safetensors", "README.md"}
    assert b"library_name: hyperinit" in calls["files"]["README.md"]
    for name in calls["files"]:
        assert not name.endswith((".pt", ".pth", ".bin", ".pkl"))


def test_hf_environment_is_read_at_call_time_as_huggingface_hub_parses_it(tmp_path, monkeypatch):
    """huggingface_hub reads HF_* once, at import (huggingface_hub.constants); hyperinit.hfenv
    reads them at each call, with the same meaning, so a change after import takes effect."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_ENDPOINT="http://127.0.0.1:9/",
        HF_HOME=str(tmp_path / "home"),
        HF_HUB_ETAG_TIMEOUT="3",
    )
    code = (
        "import importlib.util, json, sys\n"
        "from huggingface_hub import constants as c\n"
        "spec = importlib.util.spec_from_file_location('hfenv', sys.argv[1])\n"
        "e = importlib.util.module_from_spec(spec); spec.loader.exec_module(e)\n"
        "print(json.dumps([[c.HF_HUB_OFFLINE, c.ENDPOINT, c.HF_HUB_CACHE, c.HF_HUB_ETAG_TIMEOUT],"
        " [e.is_offline(), e.endpoint(), str(e.cache_dir()), e.etag_timeout()]]))\n"
    )
    hfenv_file = Path(hyperinit.__file__).parent / "hfenv.py"
    run = subprocess.run(
        [sys.executable, "-c", code, str(hfenv_file)],
        env=env, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    theirs, ours = json.loads(run.stdout.strip().splitlines()[-1])
    assert ours == theirs

    from hyperinit import hfenv

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "yes")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "later"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:8/")
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "not a number")
    assert hfenv.is_offline() and hub.is_offline()
    assert hfenv.cache_dir() == hub.default_cache_dir() == tmp_path / "later" / "hub"
    assert hfenv.endpoint() == "http://127.0.0.1:8" and hfenv.etag_timeout() == 10.0
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert not hfenv.is_offline()


def test_c2l_backbone_loads_from_a_hub_repo_and_pushes_through_the_mixin(fake_hub, tmp_path):
    from hyperinit.c2l import C2LBackbone, C2LPretrainer, load_backbone

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    folder = C2LPretrainer(net, image_size=16, queue_size=16).save_pretrained(tmp_path / "c2l")
    assert "library_name: hyperinit" in (folder / "README.md").read_text()
    fake_hub.add_folder("me/c2l-backbone", "main", folder)
    fresh = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert load_backbone(fresh, "me/c2l-backbone") == []
    assert _same_weights(fresh, net)
    loaded = C2LBackbone.from_pretrained("me/c2l-backbone", model=nn.Sequential(*fresh))
    assert loaded.config["method"] == "c2l" and loaded.config["in_chans"] == 1
    assert Path(os.environ["HF_HUB_CACHE"]) in Path(hub.fetch_repo_files("me/c2l-backbone")).parents


def test_cli_download_and_list(fake_hub, capsys, monkeypatch):
    from hyperinit.cli import main

    for name in MODALITIES:
        fake_hub.add_folder(f"hyperinit/hyperinit-{name}", "main", get_modality(name).path)
    assert main(["list"]) == 0
    assert "remote" in capsys.readouterr().out
    assert main(["download", "--modality", "cxr"]) == 0
    assert "xray" in capsys.readouterr().out
    assert main(["download", "--all"]) == 0
    assert capsys.readouterr().out.count("verified in") == len(MODALITIES)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["source"] for r in rows} == {"cached"}


def test_cli_download_reports_errors(fake_hub, capsys):
    from hyperinit.cli import main

    fake_hub.modes["model.safetensors"] = "500"
    assert main(["download", "--modality", "xray"]) == 2
    assert "model.safetensors" in capsys.readouterr().err


def test_from_pretrained_refuses_a_misspelt_keyword():
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['devcie'\].*'device'"):
        hyperinit.HyperInitializer.from_pretrained("xray", devcie="cpu")
