"""Kept for the modules that still import ``OnnxModel``: it is :class:`.engine.OrtModel`, the ONNX
Runtime implementation of :class:`.engine.Model`. New code calls :func:`.engine.load_model`."""

from __future__ import annotations

from .engine import Model, OrtModel, load_model

OnnxModel = OrtModel

__all__ = ["Model", "OnnxModel", "OrtModel", "load_model"]
