"""circuitdb.transcoder: per-layer sparse transcoders that stand in for a C2S model's MLPs.

Stages (one module each): :mod:`~circuitdb.transcoder.harvest` (MLP input/output shards),
:mod:`~circuitdb.transcoder.train` (resumable TopK / ReLU / JumpReLU training),
:mod:`~circuitdb.transcoder.evaluate` (held-out FVU, L0, CE recovered, KL, accuracy),
:mod:`~circuitdb.transcoder.activations` (feature activations per cell as AnnData).
The module itself is :class:`~circuitdb.transcoder.model.Transcoder`.
"""

from circuitdb.transcoder.model import Transcoder, TranscoderConfig, TranscoderOutput

__all__ = ["Transcoder", "TranscoderConfig", "TranscoderOutput"]
