"""Built-in strategies, provided through the same hook a third-party collapsebench plugin uses.

Each returns Avalanche training plugins for Avalanche's ``SupervisedTemplate``, so strategies
compose: ``replay+lwf`` trains with both plugins.
"""

from __future__ import annotations

from collapsebench import Option, Strategy, StrategyParts, hookimpl


def _naive(context):
    return StrategyParts()  # plain SGD on each experience in turn


def _lwf(context, alpha, temperature):
    from avalanche.training.plugins import LwFPlugin

    return StrategyParts(plugins=[LwFPlugin(alpha=alpha, temperature=temperature)])


def _replay(context, mem_size, buffer):
    from avalanche.training.plugins import ReplayPlugin
    from avalanche.training.storage_policy import (
        ClassBalancedBuffer,
        ExperienceBalancedBuffer,
        ReservoirSamplingBuffer,
    )

    storage = {
        "reservoir": ReservoirSamplingBuffer,
        "experience_balanced": ExperienceBalancedBuffer,
        "class_balanced": ClassBalancedBuffer,
    }[buffer](max_size=mem_size)
    return StrategyParts(plugins=[ReplayPlugin(mem_size=mem_size, storage_policy=storage)])


def _ewc(context, ewc_lambda, mode, decay_factor):
    from avalanche.training.plugins import EWCPlugin

    return StrategyParts(
        plugins=[EWCPlugin(ewc_lambda=ewc_lambda, mode=mode, decay_factor=decay_factor if mode == "online" else None)]
    )


@hookimpl
def collapsebench_strategies():
    return [
        Strategy("naive", "Plain SGD, one experience after another (Avalanche's SupervisedTemplate)", _naive),
        Strategy(
            "lwf",
            "Learning without Forgetting: distil the previous model's outputs (Avalanche's LwFPlugin)",
            _lwf,
            options=(
                Option("alpha", 1.0, "weight of the distillation loss (Avalanche's default)"),
                Option("temperature", 2.0, "softmax temperature of the distillation (Avalanche's default)"),
            ),
        ),
        Strategy(
            "replay",
            "Experience replay from a memory buffer (Avalanche's ReplayPlugin)",
            _replay,
            options=(
                Option("mem_size", 2000, "buffer size; 2,000 as in Zhu & Jin"),
                Option(
                    "buffer",
                    "reservoir",
                    "which samples stay: reservoir sampling as in Zhu & Jin, or balanced per experience/class",
                    choices=("reservoir", "experience_balanced", "class_balanced"),
                ),
            ),
        ),
        Strategy(
            "ewc",
            "Elastic Weight Consolidation: a Fisher-weighted pull toward past weights (Avalanche's EWCPlugin)",
            _ewc,
            options=(
                Option("ewc_lambda", 1000.0, "penalty weight; large because Fisher values on small nets are tiny"),
                Option("mode", "separate", "one penalty per past experience, or one online running penalty",
                       choices=("separate", "online")),
                Option("decay_factor", 0.9, "decay of the online penalty (mode = online only)"),
            ),
        ),
    ]
