"""Cost of the divergence guard per training iteration, against one training step of the split-digits MLP.

    uv run --locked python benchmarks/bench_divergence_guard.py
"""
import time, torch
from types import SimpleNamespace
torch.set_num_threads(1)
from collapsebench.divergence import DivergenceGuard
from collapsebench.manager import build_manager
from collapsebench.registry import Registry
r = Registry(build_manager())
model = r.get("architecture", "mlp").factory((1, 8, 8), 10, False)
x = torch.randn(16, 1, 8, 8); y = torch.randint(0, 10, (16,))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
clock = SimpleNamespace(train_exp_iterations=0)
s = SimpleNamespace(model=model, loss=torch.nn.functional.cross_entropy(model(x), y), clock=clock, experience=SimpleNamespace(current_experience=0))
g = DivergenceGuard()
def step():
    opt.zero_grad(); loss = torch.nn.functional.cross_entropy(model(x), y); loss.backward(); opt.step()
def guard():
    g.after_training_iteration(s); clock.train_exp_iterations += 1
def best(fn, n=1600, reps=7):
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(n): fn()
        out.append((time.perf_counter() - t) / n)
    return min(out)
st, gu = best(step), best(guard)
print(f"training step (split-digits MLP, batch 16, 1 thread) {st*1e6:.0f} us; guard per iteration {gu*1e6:.1f} us = {100*gu/st:.1f}%")
