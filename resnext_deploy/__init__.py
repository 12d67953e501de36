"""resnext-deploy: ResNeXt classifiers to ONNX, INT8/FP16, engines, verification gates and bundles.

The libraries' telemetry is off before any of them loads (``environment.disable_telemetry``).
"""

from resnext_deploy.environment import disable_telemetry as _disable_telemetry

_disable_telemetry()
