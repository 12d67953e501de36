"""OpenVINO backend (x86-64 CPUs, Intel edge devices): compiled models exported next to the artifact."""

from resnext_deploy.engines.openvino.backend import OpenVinoBackend

__all__ = ["OpenVinoBackend"]
