"""Tampered bundles and crafted tarballs are refused by name (exit 2); unpacking never writes outside."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from resnext_deploy.bundle import safe_extract
from resnext_deploy.bundle.manifest import verify_bundle
from resnext_deploy.errors import InputError

runner = CliRunner()


def _repack(directory: Path, output: Path) -> Path:
    """Re-tar a changed bundle folder as a tamperer would, keeping the format (manifest.json first)."""
    paths = sorted(directory.rglob("*"), key=lambda p: (p.name != "manifest.json", str(p)))
    with tarfile.open(output, "w:gz", compresslevel=0) as tar:  # any level reads alike; 0 is the quickest to write
        for path in paths:
            tar.add(path, arcname=path.relative_to(directory).as_posix(), recursive=False)
    return output


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-7])


def _unknown_schema(path: Path) -> None:
    manifest = json.loads(path.read_text())
    manifest["schema"] = "someone-else/bundle"
    path.write_text(json.dumps(manifest))


TAMPERING = [
    ("model.onnx", _flip_byte, "model.onnx: sha256 does not match"),
    ("classes.txt", _truncate, "classes.txt: size"),
    ("preprocess.json", lambda p: p.unlink(), "preprocess.json: missing"),
    ("manifest.json", _unknown_schema, "unknown schema 'someone-else/bundle'"),
    ("extra.bin", lambda p: p.write_bytes(b"payload"), "not listed in manifest.json: extra.bin"),
]


@pytest.mark.parametrize(("name", "tamper", "message"), TAMPERING, ids=[t[0] for t in TAMPERING])
def test_tampered_tarball_is_refused_by_inspect_and_predict(
    bundle_copy: Path, tmp_path: Path, images: list[Path], cli, name: str, tamper, message: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    directory = safe_extract(bundle_copy, tmp_path / "unpacked")
    tamper(directory / name)
    monkeypatch.chdir(tmp_path)  # named as a user would: the whole message fits the terminal whatever the temp path
    tampered = _repack(directory, Path("tampered.tar.gz"))
    for args in (["inspect", str(tampered)], ["predict", str(tampered), str(images[0])]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 2, result.output
        output = " ".join(result.output.split())
        assert message in output and "hint:" in output and "tampered.tar.gz" in output


@pytest.mark.parametrize(("name", "tamper", "message"), TAMPERING[:3], ids=[t[0] for t in TAMPERING[:3]])
def test_tampered_unpacked_folder_is_refused(bundle_copy: Path, tmp_path: Path, name: str, tamper, message: str) -> None:
    directory = safe_extract(bundle_copy, tmp_path / "unpacked")
    tamper(directory / name)
    with pytest.raises(InputError, match=message.split(":")[0]):
        verify_bundle(directory)


def test_truncated_tarball_is_refused(bundle_copy: Path, cli) -> None:
    data = bundle_copy.read_bytes()
    bundle_copy.write_bytes(data[: len(data) // 2])
    result = runner.invoke(cli, ["inspect", str(bundle_copy)])
    assert result.exit_code == 2 and "truncated" in " ".join(result.output.split())


def _member(tar: tarfile.TarFile, name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "", data: bytes = b"evil") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


CRAFTED = {
    "dotdot": lambda tar, root: _member(tar, "../evil.txt"),
    "nested-dotdot": lambda tar, root: _member(tar, "calibration/../../evil.txt"),
    "absolute": lambda tar, root: _member(tar, str(root / "evil.txt")),
    "symlink": lambda tar, root: _member(tar, "link", tarfile.SYMTYPE, str(root / "evil.txt")),
    "symlink-then-write": lambda tar, root: (_member(tar, "dir", tarfile.SYMTYPE, str(root)), _member(tar, "dir/evil.txt")),
    "hardlink": lambda tar, root: _member(tar, "hard", tarfile.LNKTYPE, "/etc/passwd"),
    "fifo": lambda tar, root: _member(tar, "fifo", tarfile.FIFOTYPE),
    "device": lambda tar, root: _member(tar, "dev", tarfile.CHRTYPE),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_members_are_refused_and_nothing_is_written(bundle_file: Path, tmp_path: Path, cli, case: str) -> None:
    root = tmp_path / "outside"
    root.mkdir()
    crafted = tmp_path / "work" / "crafted.tar.gz"
    crafted.parent.mkdir()
    with tarfile.open(bundle_file) as source, tarfile.open(crafted, "w:gz", compresslevel=0) as tar:
        for member in source.getmembers():
            tar.addfile(member, source.extractfile(member) if member.isreg() else None)
        CRAFTED[case](tar, root)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(InputError) as caught:
        safe_extract(crafted, tmp_path / "work" / "unpacked")
    assert "crafted.tar.gz" in caught.value.message
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    result = runner.invoke(cli, ["inspect", str(crafted)])
    assert result.exit_code == 2 and "member" in " ".join(result.output.split())
    assert not (root / "evil.txt").exists() and not (tmp_path / "work" / "evil.txt").exists()
