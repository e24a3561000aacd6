"""Fine-tuning and transfer learning on the user's own labelled images (``python -m core train``):
``data`` (class folders, split, augmentation, fingerprint), ``trunk`` (frozen stages and their
feature cache), ``losses`` (softmax, CosFace/ArcFace, batch-hard triplet), ``checkpoint`` (resume
state, model export) and ``trainer`` (the loop). What loading a trained model needs lives below,
in ``core.embed.trained`` and ``core.embed.heads``."""
from core.train.trainer import TrainResult, TrainSettings, train

__all__ = ["TrainResult", "TrainSettings", "train"]
