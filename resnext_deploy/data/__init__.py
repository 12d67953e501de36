"""Image data: folders and their layouts, subset manifests, preprocessing, demo samples.

Shared by calibration, verification, bundles and sweeps (as ``timm.data`` is kept apart from
``timm.models``); it imports no other room.
"""
