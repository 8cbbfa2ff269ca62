"""cft-ray train stage: CFT and SFT fine-tuning with DeepSpeed ZeRO on Ray Train (see :mod:`.driver`)."""

from cft_ray.stages import TrainResult
from cft_ray.train.dataset import TrainDataError
from cft_ray.train.driver import train

__all__ = ["TrainDataError", "TrainResult", "train"]
