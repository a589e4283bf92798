"""The course backbone, torchvision backbones, heads, and safe checkpoint loading."""
import json
import pickle

import pytest
import torch
from torch import nn
from torchvision.models import ResNet

import ftcourse
from ftcourse.files import ChecksumError


def test_course_backbone_is_a_torchvision_resnet_with_the_usual_names():
    model = ftcourse.course_backbone(num_classes=5)
    assert isinstance(model, ResNet)
    names = [n for n, _ in model.named_children()]
    assert names == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    with pytest.raises(ValueError, match="one entry per stage"):
        ftcourse.course_backbone(widths=(8, 16))


def test_pretrained_backbone_loads_and_is_good_on_the_source():
    model = ftcourse.load_pretrained()
    task = ftcourse.source_task()
    acc = ftcourse.evaluate(model, (task.x_test, task.y_test))
    recorded = ftcourse.files.read_manifest()["backbone"]["source_test_accuracy"]
    assert acc == pytest.approx(recorded, abs=0.01)
    assert acc > 0.9


def test_load_pretrained_with_new_head():
    model = ftcourse.load_pretrained(num_classes=7)
    assert model.fc.out_features == 7 and model.fc.in_features == 256


def test_tampered_data_file_is_refused(tmp_path, monkeypatch):
    import shutil

    for f in ftcourse.files.data_dir().iterdir():
        if f.is_file():  # data/ may also hold a results/ folder of study outputs
            shutil.copy(f, tmp_path / f.name)
    monkeypatch.setenv("FTCOURSE_DATA", str(tmp_path))
    raw = bytearray((tmp_path / "backbone.pt").read_bytes())
    raw[-100] ^= 0xFF
    (tmp_path / "backbone.pt").write_bytes(bytes(raw))
    with pytest.raises(ChecksumError, match="sha256"):
        ftcourse.load_pretrained()
    (tmp_path / "backbone.pt").unlink()
    with pytest.raises(ChecksumError, match="missing"):
        ftcourse.load_pretrained()


def test_checkpoint_round_trip_and_checksum(tmp_path):
    model = ftcourse.course_backbone()
    digest = ftcourse.save_checkpoint(model.state_dict(), tmp_path / "m.pt")
    state = ftcourse.load_checkpoint(tmp_path / "m.pt", sha256=digest)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ChecksumError, match="expected"):
        ftcourse.load_checkpoint(tmp_path / "m.pt", sha256="0" * 64)
    with pytest.raises(FileNotFoundError):
        ftcourse.load_checkpoint(tmp_path / "none.pt")
    with pytest.raises(TypeError, match="tensors"):
        ftcourse.save_checkpoint({"w": torch.zeros(1), "note": "text"}, tmp_path / "bad.pt")


class _Payload:
    """Unpickling this would run code; weights_only=True must refuse it."""

    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_checkpoint_with_arbitrary_objects_is_not_unpickled(tmp_path, capsys):
    torch.save({"w": torch.zeros(2), "evil": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ChecksumError, match="not a loadable tensor checkpoint"):
        ftcourse.load_checkpoint(tmp_path / "evil.pt")
    assert "arbitrary code ran" not in capsys.readouterr().out
    (tmp_path / "trunc.pt").write_bytes((tmp_path / "evil.pt").read_bytes()[:50])
    with pytest.raises(ChecksumError):
        ftcourse.load_checkpoint(tmp_path / "trunc.pt")
    with open(tmp_path / "list.pt", "wb") as f:
        pickle.dump([1, 2], f)
    with pytest.raises(ChecksumError):
        ftcourse.load_checkpoint(tmp_path / "list.pt")


@pytest.mark.parametrize("name", ["resnet18", "vgg11_bn", "mobilenet_v3_small", "efficientnet_b0",
                                  "convnext_tiny", "densenet121", "regnet_y_400mf"])
def test_replace_head_on_torchvision_families(name):
    if name.startswith("regnet"):  # its builder needs real tensors
        model = ftcourse.torchvision_backbone(name)
    else:
        with torch.device("meta"):  # structure only: instant, no memory
            model = ftcourse.torchvision_backbone(name)
    head_name, old = ftcourse.find_head(model)
    new = ftcourse.replace_head(model, 3)
    assert new is not old and new.out_features == 3 and new.in_features == old.in_features
    assert model.get_submodule(head_name) is new


def test_split_head_gives_features():
    model = ftcourse.course_backbone()
    body, head = ftcourse.split_head(model)
    x = torch.randn(2, 3, 32, 32)
    model.eval(), body.eval()
    assert body(x).shape == (2, 256)
    assert torch.allclose(head(body(x)), model(x), atol=1e-6)
    assert isinstance(model.fc, nn.Linear), "split_head must not change the original model"


def test_replace_head_is_reproducible_with_seed():
    a, b = ftcourse.course_backbone(), ftcourse.course_backbone()
    assert torch.equal(ftcourse.replace_head(a, 4, seed=1).weight, ftcourse.replace_head(b, 4, seed=1).weight)
    with pytest.raises(ValueError):
        ftcourse.replace_head(a, 0)
    with pytest.raises(ValueError, match="no nn.Linear"):
        ftcourse.find_head(nn.Sequential(nn.Conv2d(3, 3, 1)))


def test_torchvision_weights_load_from_the_local_cache(tmp_path, monkeypatch):
    """Real mode's loading path (weights="DEFAULT") without network: a file already in $TORCH_HOME."""
    from torchvision.models import ResNet18_Weights, resnet18

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = resnet18()
    with torch.no_grad():
        reference.fc.bias.fill_(0.123)
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference.state_dict(), cache / ResNet18_Weights.DEFAULT.url.rsplit("/", 1)[-1])
    model = ftcourse.torchvision_backbone("resnet18", weights="DEFAULT", num_classes=4)
    assert torch.equal(model.conv1.weight, reference.conv1.weight)
    assert model.fc.out_features == 4
    with pytest.raises(ValueError, match="unknown torchvision model"):
        ftcourse.torchvision_backbone("resnet19")


def test_manifest_lists_sources_and_licences():
    manifest = ftcourse.files.read_manifest()
    for name, entry in manifest["files"].items():
        assert {"sha256", "size", "source", "licence", "made_by"} <= set(entry), name
        assert (ftcourse.files.data_dir() / name).stat().st_size == entry["size"]
    assert json.dumps(manifest)  # plain JSON
    total = sum(p.stat().st_size for p in ftcourse.files.data_dir().iterdir())
    assert total < 20 * 2**20, "data/ must stay under ~20 MB"


def test_fresh_model_is_the_same_pretrained_body_and_seeded_head_every_call():
    a, b = ftcourse.fresh_model(), ftcourse.fresh_model()
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    other = ftcourse.fresh_model(seed=1)
    assert not torch.equal(a.fc.weight, other.fc.weight) and torch.equal(a.conv1.weight, other.conv1.weight)
    assert ftcourse.fresh_model(num_classes=3).fc.out_features == 3
