"""What only the notebooks need: the backbone choice and banner, parameter checks, widgets, figures, a look inside
the towers, runtime projections, ablation and analysis readers, the linear probe, the pretraining views.

The only layer that imports matplotlib, seaborn and ipywidgets. May import every layer below it; only
`mmpiqa.cli` and the notebooks import it (tests/test_layers.py checks it).
"""

from mmpiqa.runs.variants import mpiqe_run, zero_shot_run
from mmpiqa.workbook.backbone_choice import (
    OFFLINE_BACKBONE,
    REAL_BACKBONE,
    Backbone,
    choose_backbone,
    runs_dir,
)
from mmpiqa.workbook.parameters import whole_number

__all__ = [
    "OFFLINE_BACKBONE",
    "REAL_BACKBONE",
    "Backbone",
    "choose_backbone",
    "mpiqe_run",
    "runs_dir",
    "whole_number",
    "zero_shot_run",
]
