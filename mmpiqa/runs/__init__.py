"""Runs: a RunConfig in, a run folder out.

The n-split orchestrator (`experiment`), the standard run configurations (`variants`), sweeps of many runs
(`sweep`), prediction from a finished run (`predict`) and the demo (`demo`).

May import: the foundation modules, `mmpiqa.model`, `mmpiqa.train`, `mmpiqa.data`. Never: `workbook` (no
plotting, no widgets) or `cli` (tests/test_layers.py checks it).
"""
