"""The core, part 1: the prompted CLIP.

A frozen open_clip CLIP (`backbone`), the learnable prompts of both towers (`prompts`), the quality, scene and
distortion read-outs (`heads`), the model that joins them (`prompted_clip`), the prompt checkpoints
(`checkpoint`), and the speed-only rewrites the plain path calls, each proven equal to it (`fast`).

May import: the foundation modules (`mmpiqa.config`, `errors`, `files`, `labels`, `metrics`) and itself.
Never: `mmpiqa.data`, `train`, `runs`, `workbook` or `cli` (tests/test_layers.py checks it).
"""
