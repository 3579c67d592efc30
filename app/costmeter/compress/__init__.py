"""Model compression measured with torch: size, CPU latency and accuracy before and after.

Importing this package does not import torch: ``measure_compression`` does, and raises
TorchMissing (a sentence with the install command) where torch is not installed.
"""

from costmeter.compress.errors import (
    CompressError,
    CompressionCancelled,
    EvalDataError,
    ModelFileError,
    TorchMissing,
    TrainDataError,
    TrustRequired,
    UnsupportedMethod,
)
from costmeter.compress.methods import CHOICES, METHOD_HELP, SUPPORTED, parse_method
from costmeter.compress.pipeline import measure_compression, save_compressed
from costmeter.compress.report import DEFAULT_GOAL, GOALS, CompressionReport, Goal, Row
from costmeter.compress.serving_cost import ServingPrice
from costmeter.compress.torch_env import require_torch

__all__ = [
    "CHOICES",
    "DEFAULT_GOAL",
    "GOALS",
    "METHOD_HELP",
    "SUPPORTED",
    "CompressError",
    "CompressionCancelled",
    "CompressionReport",
    "EvalDataError",
    "Goal",
    "ModelFileError",
    "Row",
    "ServingPrice",
    "TorchMissing",
    "TrainDataError",
    "TrustRequired",
    "UnsupportedMethod",
    "measure_compression",
    "parse_method",
    "require_torch",
    "save_compressed",
]
