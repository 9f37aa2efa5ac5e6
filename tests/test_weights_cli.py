"""`visionml weights download / install / list` as a user on an air-gapped machine meets them: the
files come from a loopback HTTP server standing in for download.pytorch.org and the Hugging Face
Hub (the real download code, pointed at it with --base-url / VISIONML_WEIGHTS_BASE_URL), are
installed into a private torch hub cache, and `visionml train` then starts from them offline."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.support import FAST_TRAINING, free_port, loopback_http_server
from visionml.cli import main
from visionml.models.weights import weights_location

TORCHVISION_MODEL = "mobilenet_v3_small"  # the smallest registered classifier: a 10 MB state dict
TIMM_MODEL = "vits16r224"


class _Publisher(http.server.SimpleHTTPRequestHandler):
    """Serves its folder; a name in ``cut_short`` announces 1 MB and sends 100 bytes, then hangs up."""

    cut_short: frozenset[str] = frozenset()

    def do_GET(self):
        if self.path.lstrip("/") in self.cut_short:
            self.send_response(200)
            self.send_header("Content-Length", str(1 << 20))
            self.end_headers()
            self.wfile.write(b"x" * 100)
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """Files as the publishers name them: a real (seeded, randomly initialised) mobilenet_v3_small
    state dict under torchvision's file name, and a small safetensors file under the name visionml
    caches timm's ViT-S/16 weights as."""
    import torchvision
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("published")
    torch.manual_seed(1234)
    state = torchvision.models.mobilenet_v3_small(weights=None).state_dict()
    torch.save(state, folder / _file(TORCHVISION_MODEL))
    save_file({"marker": torch.arange(6.0)}, str(folder / _file(TIMM_MODEL)))
    return {"folder": folder, "state": state}


@pytest.fixture(scope="module")
def server(published):
    """A loopback HTTP server serving the published files; stopped when the module's tests end, failed or not."""
    _Publisher.cut_short = frozenset({_file("mobilenetv2")})
    with loopback_http_server(functools.partial(_Publisher, directory=str(published["folder"]))) as url:
        yield url


@pytest.fixture(scope="module")
def downloaded(server, tmp_path_factory):
    """`visionml weights download` of one torchvision and one timm model from the server."""
    out = tmp_path_factory.mktemp("download") / "weights"
    with pytest.MonkeyPatch.context() as env:
        env.delenv("VISIONML_OFFLINE", raising=False)  # the connected machine (tests/conftest.py sets it)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert main(["weights", "download", TORCHVISION_MODEL, TIMM_MODEL, "-o", str(out), "--base-url",
                         server]) == 0
    # The fake file's hash cannot start with the one torchvision publishes in the file's name.
    assert f"{out / _file(TORCHVISION_MODEL)}: its SHA-256 does not start with 047dcff4" in err.getvalue()
    return out


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty private torch hub cache on an offline machine: the base URL points at a closed
    port, so any attempt to download instead of reading the installed files fails."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("VISIONML_WEIGHTS_BASE_URL", f"http://127.0.0.1:{free_port()}")
    return tmp_path / "torch" / "hub" / "checkpoints"


def _file(model: str) -> str:
    from visionml.models.registry import get_spec

    return weights_location(get_spec(model).weights)[1].name


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _listed(capsys, *extra) -> dict:
    capsys.readouterr()
    assert main(["weights", "list", "--json", *extra]) == 0
    return {row["name"]: row for row in json.loads(capsys.readouterr().out)}


def test_download_writes_each_file_with_its_url_size_and_sha256(downloaded, published, server):
    manifest = json.loads((downloaded / "weights.json").read_text())
    entries = {entry["file"]: entry for entry in manifest["files"]}
    assert set(entries) == {_file(TORCHVISION_MODEL), _file(TIMM_MODEL)}
    for name, entry in entries.items():
        original = published["folder"] / name
        assert (downloaded / name).read_bytes() == original.read_bytes()
        assert entry["url"] == f"{server}/{name}"
        assert entry["size"] == original.stat().st_size and entry["sha256"] == _sha256(original)
    tv = entries[_file(TORCHVISION_MODEL)]
    assert tv["weights"] == "torchvision:MobileNet_V3_Small_Weights.IMAGENET1K_V1" and tv["source"] == "torchvision"
    assert tv["published_url"] == f"https://download.pytorch.org/models/{_file(TORCHVISION_MODEL)}"
    assert tv["models"] == [TORCHVISION_MODEL]
    timm_entry = entries[_file(TIMM_MODEL)]
    assert timm_entry["source"] == "timm" and timm_entry["published_url"].startswith(
        "https://huggingface.co/timm/vit_small_patch16_224.augreg_in21k_ft_in1k/")
    assert manifest["format_version"] == 1 and "torch" in manifest["versions"]
    assert not list(downloaded.glob(".*.tmp"))  # every file went through a temporary name


def test_download_takes_the_mirror_from_the_environment_and_keeps_files_it_has(server, downloaded, tmp_path,
                                                                              monkeypatch, capsys):
    out = tmp_path / "again"
    shutil.copytree(downloaded, out)
    monkeypatch.setenv("VISIONML_WEIGHTS_BASE_URL", server)
    monkeypatch.setenv("VISIONML_OFFLINE", "1")
    assert main(["weights", "download", "resnet18", "-o", str(out)]) == 1
    assert "offline mode is on (VISIONML_OFFLINE is set) and this command downloads" in capsys.readouterr().err
    monkeypatch.delenv("VISIONML_OFFLINE")
    # Two more models: resnet's R-CNN shares resnet18's file; the server has neither, so the
    # mobilenet file already in the folder must be kept, not fetched, for this to get that far.
    assert main(["weights", "download", TORCHVISION_MODEL, "resnet18", "fasterrcnn_resnet18_fpn", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{_file(TORCHVISION_MODEL)}: already downloaded" in err
    assert f"cannot download {server}/resnet18-f37072fd.pth: HTTP 404" in err
    assert err.count("fetching") == 1  # resnet18's file once, for both models
    assert not (out / "resnet18-f37072fd.pth").exists()


def test_a_transfer_cut_short_leaves_no_file_and_no_entry(server, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("VISIONML_OFFLINE", raising=False)
    out = tmp_path / "cut"
    assert main(["weights", "download", TIMM_MODEL, "mobilenetv2", "-o", str(out), "--base-url", server]) == 1
    assert f"cannot download {server}/{_file('mobilenetv2')}" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == sorted([_file(TIMM_MODEL), "weights.json"])  # no temporary file
    manifest = json.loads((out / "weights.json").read_text())
    assert [entry["file"] for entry in manifest["files"]] == [_file(TIMM_MODEL)]  # what finished is kept


def test_a_file_from_the_publisher_that_fails_its_published_hash_is_refused(server, tmp_path, monkeypatch,
                                                                            capsys):
    from visionml.models import weights

    real = weights.weights_location

    def published_here(ref):  # the loopback server stands in for download.pytorch.org itself
        _, path = real(ref)
        return f"{server}/{path.name}", path

    monkeypatch.setattr(weights, "weights_location", published_here)
    monkeypatch.delenv("VISIONML_OFFLINE", raising=False)
    monkeypatch.delenv("VISIONML_WEIGHTS_BASE_URL", raising=False)
    out = tmp_path / "refused"
    assert main(["weights", "download", TORCHVISION_MODEL, "-o", str(out)]) == 1
    assert "the download is not the published file" in capsys.readouterr().err
    assert not (out / _file(TORCHVISION_MODEL)).exists()


def test_install_puts_the_files_where_training_reads_them_and_list_shows_them(downloaded, hub, capsys):
    before = _listed(capsys)
    assert not before[TORCHVISION_MODEL]["present"] and not before[TIMM_MODEL]["present"]
    assert before[TORCHVISION_MODEL]["path"] == str(hub / _file(TORCHVISION_MODEL))

    assert main(["weights", "install", str(downloaded)]) == 0
    for model in (TORCHVISION_MODEL, TIMM_MODEL):
        placed = Path(torch.hub.get_dir()) / "checkpoints" / _file(model)
        assert placed.read_bytes() == (downloaded / _file(model)).read_bytes()

    after = _listed(capsys, "--task", "image_classification")
    assert after[TORCHVISION_MODEL]["present"] and after[TIMM_MODEL]["present"]
    assert not after["resnet50"]["present"] and "fasterrcnn_resnet18_fpn" not in after
    capsys.readouterr()
    assert main(["weights", "list", "--task", "image_classification"]) == 0
    table = capsys.readouterr().out
    line = next(line for line in table.splitlines() if line.startswith(TORCHVISION_MODEL + " "))
    assert "present" in line and str(hub / _file(TORCHVISION_MODEL)) in line
    assert "visionml weights download" in table and "visionml weights install DIR" in table

    # Again, given the manifest itself: nothing to do, nothing broken.
    assert main(["weights", "install", str(downloaded / "weights.json")]) == 0
    assert "already installed" in capsys.readouterr().err


def test_install_refuses_a_changed_file_naming_it_and_installs_nothing(downloaded, hub, tmp_path, capsys):
    copy = tmp_path / "copied"
    shutil.copytree(downloaded, copy)
    damaged = copy / _file(TIMM_MODEL)
    data = bytearray(damaged.read_bytes())
    data[-1] ^= 0xFF  # same size, one bit pattern changed: only the hash can tell
    damaged.write_bytes(bytes(data))

    assert main(["weights", "install", str(copy)]) == 1
    err = capsys.readouterr().err
    assert f"{damaged}: SHA-256 mismatch" in err and "nothing was installed" in err
    assert _file(TORCHVISION_MODEL) not in err  # the intact file is not blamed
    assert not hub.exists() or not any(hub.iterdir())  # not even the intact file was placed


def test_install_refuses_an_entry_naming_a_path_outside_the_folder(downloaded, hub, tmp_path, capsys):
    copy = tmp_path / "copied"
    shutil.copytree(downloaded, copy)
    manifest = json.loads((copy / "weights.json").read_text())
    manifest["files"][0]["file"] = "../elsewhere.pth"
    (copy / "weights.json").write_text(json.dumps(manifest))
    assert main(["weights", "install", str(copy)]) == 1
    assert f"{copy / 'weights.json'}: files[0].file: must be a plain file name" in capsys.readouterr().err


def test_training_offline_without_weights_names_the_weights_commands(sample_data, hub, tmp_path, capsys,
                                                                      monkeypatch):
    monkeypatch.setenv("VISIONML_OFFLINE", "1")
    assert main(_train_args(sample_data("multiclass"), tmp_path / "run")) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"pretrained weights for {TORCHVISION_MODEL} are not cached and offline mode is on" in err
    assert f"`visionml weights download {TORCHVISION_MODEL} -o DIR`" in err
    assert "`visionml weights install DIR`" in err and str(hub) in err


def test_train_starts_from_the_installed_weights_offline(downloaded, published, sample_data, hub, tmp_path,
                                                         monkeypatch):
    # Downloads allowed but impossible (the base URL is a closed port): a run that did not find the
    # installed file would fail trying to fetch it.
    monkeypatch.delenv("VISIONML_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert main(["weights", "install", str(downloaded)]) == 0
    run = tmp_path / "run"
    # The first two stages frozen: their convolutions leave training exactly as they were loaded.
    assert main(_train_args(sample_data("multiclass"), run, "--set", "layers_to_freeze=2")) == 0

    from safetensors.torch import load_file

    trained = load_file(str(run / "model" / "weights.safetensors"))
    served = published["state"]
    for key in ("features.0.0.weight", "features.1.block.0.0.weight"):
        assert torch.equal(trained[key], served[key]), key
    # Past the frozen stages the network trained from the installed weights (one epoch moves them
    # little), not from a random start.
    key = "features.6.block.0.0.weight"
    assert not torch.equal(trained[key], served[key])
    assert (trained[key] - served[key]).abs().max() < 0.1 * served[key].abs().max()
    assert json.loads((run / "model" / "visionml.json").read_text())["build"]["pretrained"] is True


def _train_args(data: dict, output: Path, *extra: str) -> list[str]:
    sets = [item for s in ["number_of_epochs=1", *FAST_TRAINING["image_classification"]] for item in ("--set", s)]
    return ["train", "--task", "image_classification", "--training-data", str(data["train"]),
            "--validation-data", str(data["val"]), "--model-name", TORCHVISION_MODEL, "--output", str(output),
            "--seed", "0", "--precision", "fp32", *sets, *extra]
