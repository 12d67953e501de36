"""Bundles from a hostile world: bounded and typed fields, claims checked against the model, signatures,
tar bombs refused before a byte is written, unpacked folders tied to their tarball, predict in batches."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from resnext_deploy.bundle import package_directory, safe_extract
from resnext_deploy.errors import InputError

runner = CliRunner()


def _text(result) -> str:  # type: ignore[no-untyped-def]
    assert "Traceback" not in result.output, result.output
    return " ".join(result.output.split())


def _record(directory: Path, name: str) -> dict:
    data = (directory / name).read_bytes()
    return {"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _repack(directory: Path, output: Path, refresh: tuple[str, ...] = ()) -> Path:
    """Re-tar a bundle folder the way `package` does (manifest first), re-recording the checksums of ``refresh``."""
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["files"] = [_record(directory, f["path"]) if f["path"] in refresh else f for f in manifest["files"]]
    (directory / "manifest.json").write_text(json.dumps(manifest))
    paths = sorted((p for p in directory.rglob("*") if p.is_file()), key=lambda p: (p.name != "manifest.json", str(p)))
    with tarfile.open(output, "w:gz", compresslevel=0) as tar:  # any level reads alike; 0 is the quickest to write
        for path in paths:
            tar.add(path, arcname=path.relative_to(directory).as_posix())
    return output


def _edit_json(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.fixture
def unpacked(bundle_file: Path, tmp_path: Path) -> Path:
    return safe_extract(bundle_file, tmp_path / "unpacked")


# --- items 1 and 5: every field typed and bounded before anything is allocated ------------------------------

@pytest.mark.parametrize(("edit", "message"), [
    (lambda p: p.update(input_size=100000), "input_size: Input should be less than or equal to 4096"),
    (lambda p: p.update(crop_pct=0.0001), "exceeds 8192 pixels"),
    (lambda p: p.update(std=[0.0, 1.0, 1.0]), "std.0: Input should be greater than 0"),
    (lambda p: p.update(input_size=128), "preprocess.json: manifest says"),
])
def test_preprocess_json_is_bounded_and_must_match_the_model(unpacked, tmp_path, images, cli, edit, message) -> None:
    _edit_json(unpacked / "preprocess.json", edit)
    bundle = _repack(unpacked, tmp_path / "edited.tar.gz", refresh=("preprocess.json",))
    result = runner.invoke(cli, ["predict", str(bundle), str(images[0])])
    assert result.exit_code == 2 and message in _text(result)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m: m.pop("model"), "model: Field required"),
    (lambda m: m.pop("input"), "input: Field required"),
    (lambda m: m["model"].update(num_classes="abc"), "model.num_classes: Input should be a valid integer"),
    (lambda m: m.update(precision="int4"), "precision: Input should be"),
])
def test_malformed_manifest_fields_exit_2_without_traceback(unpacked, tmp_path, images, cli, edit, message) -> None:
    _edit_json(unpacked / "manifest.json", edit)
    bundle = _repack(unpacked, tmp_path / "edited.tar.gz")
    for args in (["predict", str(bundle), str(images[0])], ["inspect", str(unpacked)]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 2 and message in _text(result), (args, result.output)


# --- item 4: claims checked against the model; a signature for authenticity ---------------------------------

@pytest.mark.parametrize(("edit", "message"), [
    (lambda m: m["model"].update(random_weights=False), "random_weights: manifest says False, model.onnx says True"),
    (lambda m: m["model"].update(name="resnext101_32x8d"), "model name: manifest says 'resnext101_32x8d'"),
    (lambda m: m.update(precision="int8"), "precision: manifest says 'int8', model.onnx says 'fp32'"),
])
def test_an_edited_manifest_is_refused(unpacked, tmp_path, images, cli, edit, message) -> None:
    _edit_json(unpacked / "manifest.json", edit)
    bundle = _repack(unpacked, tmp_path / "edited.tar.gz")
    result = runner.invoke(cli, ["predict", str(bundle), str(images[0])])
    assert result.exit_code == 2 and message in _text(result), result.output


def test_an_edited_report_cannot_hide_random_weights_from_package(export_dir, tmp_path, cli) -> None:
    copy = Path(shutil.copytree(export_dir, tmp_path / "export"))
    _edit_json(copy / "report.json", lambda r: r["weights"].update(kind="pretrained", random=False, origin="timm:x"))
    result = runner.invoke(cli, ["package", str(copy), "-o", str(tmp_path / "b.tar.gz")])
    assert result.exit_code == 2 and "report.json was edited" in _text(result)


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder = tmp_path_factory.mktemp("keys")
    paths = {}
    for name in ("ours", "theirs"):
        key = Ed25519PrivateKey.generate()
        paths[name] = folder / f"{name}.pem"
        paths[name].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
        paths[f"{name}.pub"] = folder / f"{name}.pub"
        paths[f"{name}.pub"].write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                                       serialization.PublicFormat.OpenSSH))
    return paths


@pytest.fixture(scope="module")
def signed_bundle(export_dir, keys, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    return package_directory(export_dir, tmp_path_factory.mktemp("signed") / "tiny.tar.gz", sign=keys["ours"]).path


def test_signed_bundle_verifies_against_the_trusted_key_only(signed_bundle, bundle_file, keys, images, cli) -> None:
    ok = runner.invoke(cli, ["inspect", str(signed_bundle), "--trusted-key", str(keys["ours.pub"]), "--json"])
    assert ok.exit_code == 0, ok.output
    signature = json.loads(ok.stdout)["signature"]
    assert signature["verified"] and signature["key"].startswith("SHA256:")
    wrong = runner.invoke(cli, ["predict", str(signed_bundle), str(images[0]), "--trusted-key", str(keys["theirs.pub"])])
    assert wrong.exit_code == 2 and "not a trusted key" in _text(wrong)
    unsigned = runner.invoke(cli, ["predict", str(bundle_file), str(images[0]), "--trusted-key", str(keys["ours.pub"]),
                                   "--require-signature"])
    assert unsigned.exit_code == 2 and "is not signed" in _text(unsigned)
    no_key = runner.invoke(cli, ["inspect", str(bundle_file), "--require-signature"])
    assert no_key.exit_code == 2 and "--trusted-key" in _text(no_key)
    with tarfile.open(signed_bundle) as tar:
        assert tar.getnames()[:2] == ["manifest.json", "manifest.json.sig"]


def test_a_manifest_changed_after_signing_fails_verification(signed_bundle, keys, tmp_path, cli) -> None:
    folder = safe_extract(signed_bundle, tmp_path / "unpacked")
    _edit_json(folder / "manifest.json", lambda m: m["toolchain"].update(python="0.0"))  # harmless-looking edit
    result = runner.invoke(cli, ["inspect", str(_repack(folder, tmp_path / "resigned.tar.gz")),
                                 "--trusted-key", str(keys["ours.pub"])])
    assert result.exit_code == 2 and "signature does not match" in _text(result)


def test_build_keeps_a_signed_bundle_verifiable(export_dir, keys, tmp_path, images) -> None:
    from resnext_deploy.bundle import TrustPolicy, build_bundle, open_bundle, predict_images
    from resnext_deploy.files import sha256_file

    other = Path(shutil.copytree(export_dir, tmp_path / "other-cpu"))  # an export made on another machine
    _edit_json(other / "model.onnxruntime.json", lambda s: s["cpu"].update(flags_sha256="0" * 64))
    _edit_json(other / "report.json", lambda r: r["checksums"].update({
        "model.onnxruntime.json": sha256_file(other / "model.onnxruntime.json")}))
    bundle = package_directory(other, tmp_path / "signed.tar.gz", sign=keys["ours"]).path
    policy = TrustPolicy((keys["ours.pub"],), require_signature=True)
    built = build_bundle(bundle, "onnxruntime", policy=policy)
    assert built.action == "built"
    with open_bundle(built.directory, policy) as opened:
        assert opened.signature.verified
        # rebuilt here: the sidecar always differs; ONNX Runtime's saved graph differs from build to build most
        # of the time but not always (its bytes are not deterministic), so it may or may not be listed
        unsigned = opened.signature.unsigned_files
        assert "model.onnxruntime.json" in unsigned and set(unsigned) <= {"model.onnxruntime.json", "model.ort-opt.onnx"}
        assert len(predict_images(opened, images[:1]).predictions) == 1
    _edit_json(built.directory / "manifest.json", lambda m: m["model"].update(name="other"))
    with pytest.raises(InputError):
        with open_bundle(built.directory, policy):
            pass


# --- item 3: tar bombs and malformed tarballs are refused before anything is written --------------------------

def _tarball_with(bundle_file: Path, output: Path, extra: tarfile.TarInfo, data: io.IOBase | None, position: int = 1) -> Path:
    with tarfile.open(bundle_file) as source, gzip.open(output, "wb", compresslevel=1) as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        members = source.getmembers()
        for index, member in enumerate(members):
            if index == position:
                tar.addfile(extra, data)
            tar.addfile(member, source.extractfile(member) if member.isreg() else None)
    return output


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def _written(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_an_unlisted_bomb_member_is_refused_before_a_byte_is_written(bundle_file, tmp_path, cli) -> None:
    info = tarfile.TarInfo("zeros.bin")
    info.size = 256 * 1024**2
    bomb = _tarball_with(bundle_file, tmp_path / "bomb.tar.gz", info, _Zeros(info.size))
    assert bomb.stat().st_size < bundle_file.stat().st_size + 2 * 1024**2  # 256 MiB in about 1 MB
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(InputError, match="not listed in manifest.json: zeros.bin"):
        safe_extract(bomb, work / "unpacked")
    assert _written(work) == 0 and list(work.iterdir()) == []
    result = runner.invoke(cli, ["inspect", str(bomb)])
    assert result.exit_code == 2 and "zeros.bin" in _text(result)


def test_sizes_and_order_are_checked_against_the_manifest(bundle_file, tmp_path) -> None:
    with tarfile.open(bundle_file) as tar:
        classes = next(m for m in tar.getmembers() if m.name == "classes.txt")
        data = tar.extractfile(classes).read()  # type: ignore[union-attr]
    grown = tarfile.TarInfo("classes.txt")
    grown.size = len(data) + 8 * 1024**2  # the header declares more than the manifest
    rebuilt = tmp_path / "grown.tar.gz"
    with tarfile.open(bundle_file) as source, tarfile.open(rebuilt, "w:gz", compresslevel=0) as tar:
        for member in source.getmembers():
            if member.name == "classes.txt":
                tar.addfile(grown, _Zeros(grown.size))
            else:
                tar.addfile(member, source.extractfile(member) if member.isreg() else None)
    with pytest.raises(InputError, match=r"classes.txt: size \d+ bytes, manifest says"):
        safe_extract(rebuilt, tmp_path / "a")
    reordered = tmp_path / "reordered.tar.gz"
    with tarfile.open(bundle_file) as source, tarfile.open(reordered, "w:gz", compresslevel=0) as tar:
        for member in sorted(source.getmembers(), key=lambda m: m.name != "classes.txt"):
            tar.addfile(member, source.extractfile(member) if member.isreg() else None)
    with pytest.raises(InputError, match="not manifest.json"):
        safe_extract(reordered, tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grown.tar.gz", "reordered.tar.gz"]


def test_not_enough_disk_space_is_said_before_unpacking(bundle_file, tmp_path, monkeypatch) -> None:
    from collections import namedtuple

    from resnext_deploy.errors import OutputError

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(OutputError, match="has 1,000 free"):
        safe_extract(bundle_file, tmp_path / "x")


# --- item 2: the unpacked folder belongs to its tarball ------------------------------------------------------

def test_build_unpacks_afresh_when_the_tarball_changed(bundle_file, signed_bundle, tmp_path) -> None:
    from resnext_deploy.bundle import build_bundle

    tarball = Path(shutil.copy(bundle_file, tmp_path / "tiny.tar.gz"))
    first = build_bundle(tarball, "onnxruntime")
    assert "unpacked into" in first.unpacked and not (first.directory / "manifest.json.sig").exists()
    assert "reused" in build_bundle(tarball, "onnxruntime").unpacked
    shutil.copy(signed_bundle, tarball)  # the device receives an update under the same name
    updated = build_bundle(tarball, "onnxruntime")
    assert "afresh" in updated.unpacked and "replacing another tarball" in updated.unpacked
    assert (updated.directory / "manifest.json.sig").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny", "tiny.tar.gz"]


# --- item 17: predict streams images in batches ------------------------------------------------------------

def test_predict_decodes_and_runs_one_batch_at_a_time(bundle_file, tmp_path, monkeypatch, cli) -> None:
    import onnxruntime

    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(1)
    paths = []
    for index in range(70):
        paths.append(folder / f"{index:03d}.jpg")
        Image.fromarray((rng.random((40, 50, 3)) * 255).astype(np.uint8)).save(paths[-1])
    batches: list[int] = []
    real_run = onnxruntime.InferenceSession.run

    def counting_run(self, output_names, feed, *args, **kwargs):  # type: ignore[no-untyped-def]
        batches.append(len(next(iter(feed.values()))))
        return real_run(self, output_names, feed, *args, **kwargs)

    monkeypatch.setattr(onnxruntime.InferenceSession, "run", counting_run)
    result = runner.invoke(cli, ["predict", str(bundle_file), *map(str, paths), "--json", "--backend", "onnxruntime"])
    assert result.exit_code == 0, result.output
    predicted = [p["image"] for p in json.loads(result.stdout)["predictions"]]
    assert predicted == [str(p) for p in paths]
    assert batches == [32, 32, 6]


def test_a_global_passphrase_is_ignored_for_an_unencrypted_key(export_dir, keys, tmp_path, cli, monkeypatch) -> None:
    from cryptography.hazmat.primitives import serialization

    from resnext_deploy.bundle.signing import PASSPHRASE_ENV, load_private_key

    monkeypatch.setenv(PASSPHRASE_ENV, "set-for-every-ci-job")
    result = runner.invoke(cli, ["package", str(export_dir), "-o", str(tmp_path / "b.tar.gz"), "--sign", str(keys["ours"])])
    assert result.exit_code == 0, _text(result)
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(load_private_key(keys["ours"]).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"right")))
    wrong = runner.invoke(cli, ["package", str(export_dir), "-o", str(tmp_path / "c.tar.gz"), "--sign", str(encrypted)])
    assert wrong.exit_code == 2 and "Traceback" not in wrong.output  # a wrong passphrase is still a clear refusal
    monkeypatch.delenv(PASSPHRASE_ENV)
    missing = runner.invoke(cli, ["package", str(export_dir), "-o", str(tmp_path / "d.tar.gz"), "--sign", str(encrypted)])
    assert missing.exit_code == 2 and "is encrypted" in _text(missing)
    monkeypatch.setenv(PASSPHRASE_ENV, "right")
    right = runner.invoke(cli, ["package", str(export_dir), "-o", str(tmp_path / "e.tar.gz"), "--sign", str(encrypted)])
    assert right.exit_code == 0, _text(right)


@pytest.mark.parametrize("edit", [
    {"key": {"an": "object"}}, {"key": ["SHA256:x"]}, {"signature": 12}, {"key": "SHA256:" + "x" * 100_000},
])
def test_a_signature_record_of_the_wrong_types_exits_2(signed_bundle, keys, tmp_path, cli, edit) -> None:
    folder = safe_extract(signed_bundle, tmp_path / "unpacked")
    _edit_json(folder / "manifest.json.sig", lambda record: record.update(edit))
    result = runner.invoke(cli, ["inspect", str(folder), "--trusted-key", str(keys["ours.pub"])])
    assert result.exit_code == 2 and "manifest.json.sig" in _text(result), _text(result)
    assert len(result.output) < 4000  # what the error quotes is shortened
