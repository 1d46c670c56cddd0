"""Data: the dataset readers (official file formats), the embedded benchmark, the distortion families, the
procedural pretraining corpus, source-disjoint splits, crops and the torch dataset.

May import: the foundation modules (`mmpiqa.errors`, `files`, `labels`) and itself. Never `mmpiqa.model`,
`train`, `runs`, `workbook` or `cli` (tests/test_layers.py checks it).
"""
