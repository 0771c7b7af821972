"""Synthetic run directories for the leaderboard tests: real configs of a real track, made-up
numbers, no training (so no torch)."""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path

from collapsebench.metrics.accuracy import summarize

TRACK = "split-digits-mlp"
TAPS = ("fc1", "fc2")
N_EXPERIENCES = 5


@functools.lru_cache(maxsize=None)
def _manager_and_registry(plugins: tuple[str, ...] = ()):
    from collapsebench.manager import build_manager
    from collapsebench.registry import Registry

    manager = build_manager(list(plugins))
    return manager, Registry(manager)


def track_record(name: str = TRACK, plugins: tuple[str, ...] = ()):
    from collapsebench.tracks import get_track

    return get_track(_manager_and_registry(plugins)[0], name)


def fake_results(seed: int, strategy: str = "naive", skill: float = 0.5, collapse: float = 0.8,
                 track: str = TRACK, fingerprint: str = "sklearn-digits-test",
                 description: str = "sklearn digits, 1437 train / 360 test images", fresh=None) -> dict:
    """A complete results.json of ``strategy`` on ``track``: accuracy around ``skill``, final
    activation erank ``collapse`` times its peak."""
    from collapsebench.config import build_config, resolve_component_options

    manager, registry = _manager_and_registry()
    record = track_record(track)
    config = build_config(dict(record.config), {"track": track, "strategy": strategy, "seed": seed,
                                                "out": f"runs/{strategy}/seed{seed}"})
    resolved = resolve_component_options(config, registry)
    rng = random.Random(f"{strategy}-{seed}-{skill}")
    size = N_EXPERIENCES
    matrix = [[round(min(1.0, max(0.0, (0.97 if j == i else skill if j < i else 0.0) + rng.uniform(-0.05, 0.05))) * 72) / 72
               if j <= i else 0.0 for j in range(size)] for i in range(size)]
    metrics, finals, peaks, dead = [], {}, {}, {}
    for tap in TAPS:
        peak = 50 + 10 * rng.random()
        series = [peak * (1.0 if j == 1 else 0.95) for j in range(size - 1)] + [peak * collapse]
        deads = [round(rng.uniform(0, 0.3), 4) for _ in range(size)]
        for j in range(size):
            common = {"layer": tap, "experience": j, "phase": "end", "iteration": 90 * (j + 1)}
            metrics += [{"name": "erank", "kind": "activation", "value": series[j], **common},
                        {"name": "dead_units", "kind": "activation", "value": deads[j], **common},
                        {"name": "erank", "kind": "weight", "value": 60.0 - j, **common}]
        finals[tap], peaks[tap], dead[tap] = series[-1], max(series), deads[-1]
    summary = summarize(matrix)
    summary["capacity_retention"] = sum(finals[t] / peaks[t] for t in TAPS) / len(TAPS)
    summary["dead_units"] = sum(dead.values()) / len(dead)
    summary["dormant_units"] = 0.1
    summary["forgetting_erank_correlation"] = {"pearson": 0.5, "spearman": 0.4, "n": 4}
    if fresh is not None:  # as the plasticity evaluator reports it
        ratios = [matrix[j][j] / fresh[j] if fresh[j] > 0 else None for j in range(size)]
        finite = [r for r in ratios if r is not None]
        summary.update(plasticity=ratios, plasticity_mean=sum(finite) / len(finite), fresh_accuracy=list(fresh))
        metrics += [{"name": "fresh_accuracy", "kind": "model", "layer": "all", "experience": j, "value": fresh[j],
                     "phase": "end", "iteration": 90 * (j + 1)} for j in range(size)]
    return {
        "schema_version": 1,
        "status": "complete",
        "config": {**config.to_dict(), "resolved_options": resolved,
                   "plugins": [{"name": i.name, "source": i.source, "location": i.location,
                                "distribution": i.distribution, "version": i.version} for i in manager.info.values()]},
        "environment": {"python": "3.11.7", "platform": "test", "collapsebench": "0.1.0", "torch": "2.13.0",
                        "torchvision": "0.28.0", "avalanche": "0.6.0", "pluggy": "1.7.0"},
        "stream": {"description": description, "scenario": "class", "n_experiences": size, "input_shape": [1, 8, 8],
                   "n_classes": 10, "fingerprint": fingerprint,
                   "classes_per_experience": [[2 * j, 2 * j + 1] for j in range(size)]},
        "probe": {"size": 10, "per_experience": [2] * size, "experience_index_pairs": [[j, 0] for j in range(size)] * 2},
        "taps": [{"name": t, "width": 256} for t in TAPS],
        "accuracy_matrix": matrix,
        "summary": summary,
        "metrics": metrics,
        "timing": {"total": 1.0},
    }


def write_runs(root: Path, strategy: str = "naive", seeds=(0, 1, 2), **kwargs) -> list[Path]:
    """One run directory per seed under ``root/strategy``."""
    dirs = []
    for seed in seeds:
        run_dir = Path(root) / strategy / f"seed{seed}"
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "results.json").write_text(json.dumps(fake_results(seed, strategy, **kwargs), indent=1))
        dirs.append(run_dir)
    return dirs
