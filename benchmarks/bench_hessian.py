"""Top Hessian eigenvalues: collapsebench's Lanczos against PyHessian's power iteration, plus metric costs.

Run:  uv run python benchmarks/bench_hessian.py            (about 2-4 minutes on one CPU thread)
      uv run python benchmarks/bench_hessian.py --quick    (smaller, for a smoke test)

1. Trains a 784-256-256-10 ReLU MLP briefly on MNIST (the shared raw files, read with
   torchvision, never downloaded; random data when they are absent) and takes a probe batch
   of 512 held-out images.
2. Computes a converged reference of the top 5 eigenvalues (Lanczos in float64, tol 1e-10).
3. For k = 1 and k = 5, runs ``hessian_top_eigenvalues`` and PyHessian's
   ``hessian(model, criterion, data=(x, y), cuda=False).eigenvalues(top_n=k)`` several times
   with different seeds, counting Hessian-vector products (PyHessian's are counted by wrapping
   its ``hessian_vector_product`` for the duration of the call, nothing is patched on disk) and
   timing each call, and reports medians and the relative error against the reference.
4. Measures how erank, linear CKA and one Hessian-vector product scale with layer width and
   probe size.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import statistics
import time
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from collapsebench.metrics import erank, hessian_operator, hessian_top_eigenvalues, linear_cka

MNIST_ROOT = "/work/shared/data"


def mlp(width: int = 256) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))


def mnist_or_random(train_size: int, probe_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """(train x, train y, probe x, probe y, source): MNIST scaled to [0, 1] if present, else Gaussian noise."""
    try:
        from torchvision.datasets import MNIST

        train = MNIST(root=MNIST_ROOT, train=True, download=False)
        test = MNIST(root=MNIST_ROOT, train=False, download=False)
    except (RuntimeError, OSError) as error:
        print(f"MNIST not readable under {MNIST_ROOT} ({error}); using random inputs and labels")
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(train_size + probe_size, 784, generator=generator)
        y = torch.randint(0, 10, (train_size + probe_size,), generator=generator)
        return x[:train_size], y[:train_size], x[train_size:], y[train_size:], "random"

    def scaled(data: torch.Tensor) -> torch.Tensor:
        return (data.float() / 255.0 - 0.1307) / 0.3081

    return (
        scaled(train.data[:train_size]).reshape(-1, 784),
        train.targets[:train_size],
        scaled(test.data[:probe_size]).reshape(-1, 784),
        test.targets[:probe_size],
        "MNIST",
    )


def train_briefly(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        batch = torch.randint(0, x.shape[0], (128,), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(x[batch]), y[batch])
        loss.backward()
        optimizer.step()
    model.zero_grad(set_to_none=True)
    return loss.item()


@contextlib.contextmanager
def counting_pyhessian_products() -> Iterator[list[int]]:
    """Counts calls of PyHessian's Hessian-vector product while the block runs."""
    # pyhessian/__init__ rebinds the name `pyhessian.hessian` to the class; the module is in sys.modules.
    module = importlib.import_module("pyhessian.hessian")
    original = module.hessian_vector_product
    counter = [0]

    def counted(*args, **kwargs):
        counter[0] += 1
        return original(*args, **kwargs)

    module.hessian_vector_product = counted
    try:
        yield counter
    finally:
        module.hessian_vector_product = original


def pyhessian_top(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, seed: int, tol: float) -> tuple[list[float], int, float]:
    from pyhessian import hessian as PyHessian

    model.zero_grad(set_to_none=True)  # PyHessian reads .grad, which must hold only this batch's gradient
    torch.manual_seed(seed)  # PyHessian draws its start vectors from the global RNG
    training = model.training
    with counting_pyhessian_products() as counter, warnings.catch_warnings():
        # Its loss.backward(create_graph=True) warns about the .grad reference cycle, cleared below.
        warnings.simplefilter("ignore", UserWarning)
        start = time.perf_counter()
        values, _ = PyHessian(model, nn.CrossEntropyLoss(), data=(x, y), cuda=False).eigenvalues(top_n=k, tol=tol)
        elapsed = time.perf_counter() - start
    model.zero_grad(set_to_none=True)  # it leaves .grad attached to a double-backward graph
    model.train(training)
    return sorted(values, key=abs, reverse=True), counter[0], elapsed


def ours_top(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, seed: int, tol: float, guard: int = 2
) -> tuple[list[float], int, float]:
    start = time.perf_counter()
    result = hessian_top_eigenvalues(model, nn.CrossEntropyLoss(), x, y, k=k, seed=seed, tol=tol, guard=guard)
    elapsed = time.perf_counter() - start
    return result.eigenvalues, result.hvp_count, elapsed


def relative_error(got: list[float], reference: list[float]) -> float:
    return max(abs(g - r) / abs(r) for g, r in zip(got, reference))


def reference_top(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int) -> tuple[list[float], list[float], int]:
    """Top-k in float64 with a tight tolerance: the converged values to measure errors against."""
    model64 = copy.deepcopy(model).double()
    result = hessian_top_eigenvalues(
        model64, nn.CrossEntropyLoss(), x.double(), y, k=k, tol=1e-10, max_iter=400, seed=12345, guard=k
    )
    if not result.converged:
        print("warning: the reference did not reach tol 1e-10")
    return result.eigenvalues, result.residuals, result.hvp_count


def compare(model, x, y, reference, repeats: int) -> list[dict]:
    rows = []
    for k in (1, 5):
        methods = {
            "collapsebench Lanczos (tol 1e-3, default guard 2)": lambda s, k=k: ours_top(model, x, y, k, s, 1e-3),
            "collapsebench Lanczos (tol 1e-3, guard 0)": lambda s, k=k: ours_top(model, x, y, k, s, 1e-3, guard=0),
            "PyHessian power iteration (tol 1e-3)": lambda s, k=k: pyhessian_top(model, x, y, k, s, 1e-3),
            "PyHessian power iteration (tol 1e-5)": lambda s, k=k: pyhessian_top(model, x, y, k, s, 1e-5),
        }
        for name, method in methods.items():
            values, counts, times, errors = [], [], [], []
            for seed in range(repeats):
                got, count, elapsed = method(seed)
                counts.append(count)
                times.append(elapsed)
                errors.append(relative_error(got, reference[:k]))
                values.append(got)
            rows.append(
                {
                    "k": k,
                    "method": name,
                    "hvps": statistics.median(counts),
                    "seconds": statistics.median(times),
                    "error_median": statistics.median(errors),
                    "error_max": max(errors),
                }
            )
            print(
                f"k={k} {name}: HVPs {counts}, seconds {[round(t, 3) for t in times]}, "
                f"max rel. error {[f'{e:.1e}' for e in errors]}",
                flush=True,
            )
    return rows


def timed(function, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def scaling(widths: list[int], probe_sizes: list[int]) -> list[dict]:
    rows = []
    generator = torch.Generator().manual_seed(0)
    criterion = nn.CrossEntropyLoss()
    for width in widths:
        torch.manual_seed(0)
        model = mlp(width)
        for n in probe_sizes:
            activations = torch.relu(torch.randn(n, width, generator=generator))
            other = torch.relu(torch.randn(n, width, generator=generator))
            x = torch.randn(n, 784, generator=generator)
            y = torch.randint(0, 10, (n,), generator=generator)
            with hessian_operator(model, criterion, x, y) as operator:
                vector = torch.randn(operator.dim, generator=generator)
                hvp = timed(lambda: operator.matvec(vector))
                dim = operator.dim
            rows.append(
                {
                    "width": width,
                    "n": n,
                    "params": dim,
                    "erank_ms": 1e3 * timed(lambda: erank(activations)),
                    "cka_ms": 1e3 * timed(lambda: linear_cka(activations, other)),
                    "hvp_ms": 1e3 * hvp,
                }
            )
            print(rows[-1], flush=True)
    return rows


def markdown(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    header = "| " + " | ".join(title for _, title, _ in columns) + " |"
    rule = "| " + " | ".join("---" for _ in columns) + " |"
    lines = [header, rule]
    for row in rows:
        lines.append("| " + " | ".join(format(row[key], spec) for key, _, spec in columns) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, steps and scaling points")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps timings stable on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 2 if args.quick else args.repeats

    train_x, train_y, probe_x, probe_y, source = mnist_or_random(10_000, 512)
    torch.manual_seed(0)
    model = mlp(256)
    loss = train_briefly(model, train_x, train_y, steps=100 if args.quick else 400)
    with torch.no_grad():
        accuracy = float((model(probe_x).argmax(1) == probe_y).float().mean())
    params = sum(p.numel() for p in model.parameters())
    print(f"data {source}; MLP 784-256-256-10 ({params} parameters); last train loss {loss:.3f}; probe accuracy {accuracy:.3f}")

    start = time.perf_counter()
    reference, residuals, reference_hvps = reference_top(model, probe_x, probe_y, 5)
    print(
        f"reference top-5 (float64, {reference_hvps} HVPs, {time.perf_counter() - start:.1f}s): "
        + ", ".join(f"{v:.6g} (±{r:.0e})" for v, r in zip(reference, residuals)),
        flush=True,
    )

    rows = compare(model, probe_x, probe_y, reference, repeats)
    print()
    print(f"Top eigenvalues, batch 512, median of {repeats} seeds, {args.threads} thread(s):\n")
    print(
        markdown(
            rows,
            [
                ("k", "k", "d"),
                ("method", "method", "s"),
                ("hvps", "HVPs (median)", ".0f"),
                ("seconds", "time s (median)", ".2f"),
                ("error_median", "rel. error (median)", ".1e"),
                ("error_max", "rel. error (max)", ".1e"),
            ],
        )
    )

    widths = [64, 256] if args.quick else [64, 256, 1024]
    probes = [256, 1024] if args.quick else [256, 1024, 4096]
    print()
    print("Cost of one evaluation against width and probe size (median of 3):\n")
    print(
        markdown(
            scaling(widths, probes),
            [
                ("width", "width", "d"),
                ("n", "probe n", "d"),
                ("params", "MLP params", "d"),
                ("erank_ms", "erank ms (n x width)", ".2f"),
                ("cka_ms", "linear CKA ms", ".2f"),
                ("hvp_ms", "one HVP ms", ".1f"),
            ],
        )
    )


if __name__ == "__main__":
    main()
