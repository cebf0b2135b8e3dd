"""Models shared by the stages that learn (IQA now, segmentation later): checkpoints and the registry.

`checkpoint`: a checkpoint is a directory of safetensors weights + checkpoint.json (arch, classes,
normalisation, input, training, sha256); saved atomically, verified on load, never unpickled.
`registry`: named architectures from configs/models.yaml, and the checkpoints packaged under
mapper/data/models/ (e.g. `iqa-default`); `archs`: the schema of each kind's arch.

This package sits below iqa/, seg/ and croptype/ (they import it; it imports none of them: a checkpoint's
builder is looked up by name when it loads).

Importing this package does not import torch.
"""

from mapper.models.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from mapper.models.registry import ModelSpec, get_model_spec, load_model_registry, resolve_checkpoint

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "ModelSpec",
    "get_model_spec",
    "load_checkpoint",
    "load_model_registry",
    "resolve_checkpoint",
    "save_checkpoint",
]
