"""Evaluation of frozen backbones: linear probe, k-NN, equivariance score and corruption robustness.

>>> feats, labels = extract_features(backbone, train_batches)                       # doctest: +SKIP
>>> probe = linear_probe(feats, labels, test_feats, test_labels)                     # doctest: +SKIP
>>> robustness(backbone, probe, test_batches).mean_corruption_accuracy               # doctest: +SKIP
>>> equivariance_score(backbone, images, create_group("p4m"), layer=3).map_scores    # doctest: +SKIP

``rotation_probes(features, rotations, objects, split)`` scores 3D pose and identity on a rot3d set.

Every result is a dataclass with ``to_dict()`` / ``to_json()``; ``render_table(result)`` gives a rich table.
"""

from equireg.evaluation.corruptions import (
    CORRUPTIONS,
    DEFAULT_CORRUPTIONS,
    Corruption,
    apply_corruption,
    get_corruption,
    list_corruptions,
    register_corruption,
)
from equireg.evaluation.equivariance import EquivarianceResult, element_linear_scale, equivariance_score
from equireg.evaluation.features import extract_features
from equireg.evaluation.knn import KNNResult, knn_classify, knn_votes
from equireg.evaluation.linear_eval import FrozenFeatures, ImageClassifier, LinearEvalResult, linear_eval
from equireg.evaluation.linear_probe import LinearClassifier, LinearProbeResult, linear_probe
from equireg.evaluation.report import render_table
from equireg.evaluation.robustness import RobustnessResult, robustness
from equireg.evaluation.rotation import RotationProbeResult, rotation_probes
from equireg.evaluation.transfer import CorruptionSetResult, FlipRateResult, LayoutError, TransferResult

__all__ = [
    "CORRUPTIONS",
    "DEFAULT_CORRUPTIONS",
    "Corruption",
    "CorruptionSetResult",
    "FlipRateResult",
    "FrozenFeatures",
    "ImageClassifier",
    "LayoutError",
    "LinearEvalResult",
    "TransferResult",
    "EquivarianceResult",
    "KNNResult",
    "LinearClassifier",
    "LinearProbeResult",
    "RobustnessResult",
    "RotationProbeResult",
    "apply_corruption",
    "element_linear_scale",
    "equivariance_score",
    "extract_features",
    "get_corruption",
    "knn_classify",
    "knn_votes",
    "linear_eval",
    "linear_probe",
    "list_corruptions",
    "register_corruption",
    "render_table",
    "robustness",
    "rotation_probes",
]
