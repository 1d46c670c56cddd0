"""mmpiqa: multi-modal prompt learning on blind image quality assessment, with a frozen open_clip CLIP.

The public API used by the notebooks and the command line:

    from mmpiqa import ModelConfig, build_model, save_prompts, load_prompts
    model = build_model(ModelConfig(backbone="tiny"))      # frozen CLIP + learnable prompts
    out = model(images)                                     # images: RGB in [0, 1], (B, 3, H, W)
    out.score, out.logits["scene"]
"""

from mmpiqa.config import ModelConfig
from mmpiqa.model.checkpoint import load_prompts, save_prompts
from mmpiqa.model.prompted_clip import IQAOutput, PromptedCLIP, build_model

__version__ = "0.1.0"

__all__ = [
    "IQAOutput",
    "ModelConfig",
    "PromptedCLIP",
    "__version__",
    "build_model",
    "load_prompts",
    "save_prompts",
]
