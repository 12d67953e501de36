"""Edge bundles: pack an export directory, check and unpack it safely, build and predict on a device.

Importing this package loads no heavy library; ONNX, ONNX Runtime and timm are imported where used.
"""

from resnext_deploy.bundle.device import BuildResult, PredictResult, build_bundle, predict_images
from resnext_deploy.bundle.manifest import (
    MANIFEST_NAME,
    SCHEMA,
    SCHEMA_VERSION,
    CheckResult,
    read_manifest,
    verify_bundle,
)
from resnext_deploy.bundle.open import OpenedBundle, open_bundle
from resnext_deploy.bundle.pack import PackageResult, package_directory
from resnext_deploy.bundle.signing import SignatureStatus, TrustPolicy
from resnext_deploy.bundle.unpack import safe_extract

__all__ = [
    "MANIFEST_NAME",
    "SCHEMA",
    "SCHEMA_VERSION",
    "BuildResult",
    "CheckResult",
    "PredictResult",
    "build_bundle",
    "predict_images",
    "OpenedBundle",
    "PackageResult",
    "open_bundle",
    "package_directory",
    "read_manifest",
    "safe_extract",
    "SignatureStatus",
    "TrustPolicy",
    "verify_bundle",
]
