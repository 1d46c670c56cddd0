"""The core, part 2: learning.

The losses (`losses`), the one training step and the loop with its frozen-feature cache and device, seed and
DDP helpers (`trainer`), the allocator setting the loop relies on (`heap`), and the contrastive pretraining of
the offline teaching CLIP (`pretrain`).

May import: the foundation modules (`mmpiqa.config`, `errors`, `files`, `labels`, `metrics`), `mmpiqa.model`,
`mmpiqa.data`. Never: `runs`, `workbook` or `cli` (tests/test_layers.py checks it).
"""
