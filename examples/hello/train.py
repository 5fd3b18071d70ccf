"""A tiny "training" script: reads its config, fits a line, prints the result."""
import json
import os

with open(os.path.join(os.path.dirname(__file__), "data", "config.json")) as f:
    cfg = json.load(f)

xs = list(range(cfg["points"]))
ys = [cfg["slope"] * x + cfg["intercept"] for x in xs]
n = len(xs)
mx, my = sum(xs) / n, sum(ys) / n
slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
print(f"fitted slope {slope:.3f}, running in fairing: {os.environ.get('FAIRING_RUNTIME') == '1'}")
