"""Sweeps: a track's grid of strategies x seeds, run by a process pool or on Ray, resumable.

``grid`` turns the command line into checked jobs and decides which are already done;
``work`` runs one job inside a worker and records its failure; ``executors`` hand jobs to a
local process pool or to Ray; ``driver`` ties them together with the progress display.
Nothing here imports torch, Avalanche or Ray at module level.
"""
