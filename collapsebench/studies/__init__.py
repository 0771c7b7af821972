"""Studies: declared experiments that test a paper's claim through collapsebench's own runs.

A study file (TOML) names a run grid, the figures to draw and the claims to check; ``study
run`` hands the grid to the sweep's driver and executors, and ``study report`` turns the run
directories into a page with a PASS or FAIL per claim (docs/studies.md). Study files come from
directories that collapsebench plugins return from ``collapsebench_study_dirs``; the core names
no study, stream, architecture or strategy of its own.
"""
