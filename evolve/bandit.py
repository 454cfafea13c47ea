"""Choosing which model to ask next: UCB1 bandit or fixed weights.

Both selectors are deterministic given the rng and the sequence of `update` calls, so the
engine can rebuild one on resume by replaying its recorded updates.
"""

from __future__ import annotations

import math
import random

from evolve.config import ModelConfig

MIN_COST_RATIO = 0.1  # cost-aware UCB: the cheapest model's reward is boosted at most 10x


class UCBBandit:
    """UCB1 over models; reward is the child's fitness gain over its parent, clipped at 0.

    Untried models are chosen first, in list order. Then the model maximising
    `mean_reward / cost_ratio + exploration * sqrt(2 ln N / n)` wins (ties broken by rng).
    `cost_ratio` is 1 unless `cost_aware`: then it is the model's cost per call divided by
    the most expensive model's, floored at MIN_COST_RATIO. Cost per call comes from
    `prices` (any consistent unit) if given, else from the mean `cost` passed to `update`.
    """

    def __init__(
        self,
        models: list[str],
        exploration: float = 1.0,
        cost_aware: bool = False,
        prices: dict[str, float] | None = None,
    ) -> None:
        if not models:
            raise ValueError("UCBBandit needs at least one model")
        if len(set(models)) != len(models):
            raise ValueError(f"duplicate model names: {models}")
        self.models = list(models)
        self.exploration = exploration
        self.cost_aware = cost_aware
        self.prices = dict(prices) if prices is not None else None
        self.counts = dict.fromkeys(self.models, 0)
        self.reward_sums = dict.fromkeys(self.models, 0.0)
        self.cost_sums = dict.fromkeys(self.models, 0.0)

    def _mean(self, sums: dict[str, float], model: str) -> float:
        n = self.counts[model]
        return sums[model] / n if n else 0.0

    def _cost_ratios(self) -> dict[str, float]:
        if not self.cost_aware:
            return dict.fromkeys(self.models, 1.0)
        if self.prices is not None:
            costs = {m: max(self.prices.get(m, 0.0), 0.0) for m in self.models}
        else:
            costs = {m: max(self._mean(self.cost_sums, m), 0.0) for m in self.models}
        top = max(costs.values())
        if top <= 0:
            return dict.fromkeys(self.models, 1.0)
        return {m: max(c / top, MIN_COST_RATIO) for m, c in costs.items()}

    def scores(self) -> dict[str, float]:
        """UCB score of each tried model (untried models get +inf)."""
        total = sum(self.counts.values())
        ratios = self._cost_ratios()
        out = {}
        for m in self.models:
            n = self.counts[m]
            if n == 0:
                out[m] = math.inf
                continue
            bonus = self.exploration * math.sqrt(2 * math.log(total) / n)
            out[m] = self._mean(self.reward_sums, m) / ratios[m] + bonus
        return out

    def choose(self, rng: random.Random) -> str:
        """The model to ask next."""
        for m in self.models:
            if self.counts[m] == 0:
                return m
        scores = self.scores()
        best = max(scores.values())
        tied = [m for m in self.models if math.isclose(scores[m], best, rel_tol=1e-12)]
        return tied[0] if len(tied) == 1 else rng.choice(tied)

    def update(self, model: str, reward: float, cost: float = 0.0) -> None:
        """Record one call's reward (negative values are clipped to 0) and cost."""
        if model not in self.counts:
            raise KeyError(f"unknown model {model!r}; known: {self.models}")
        self.counts[model] += 1
        self.reward_sums[model] += max(reward, 0.0)
        self.cost_sums[model] += cost

    def state(self) -> dict:
        """Counts, mean rewards and mean costs per model, for logging."""
        return {
            "kind": "ucb",
            "counts": dict(self.counts),
            "mean_reward": {m: self._mean(self.reward_sums, m) for m in self.models},
            "mean_cost": {m: self._mean(self.cost_sums, m) for m in self.models},
        }


class FixedWeights:
    """Choose a model at random in proportion to fixed weights; updates are ignored."""

    def __init__(self, weights: dict[str, float]) -> None:
        if not weights:
            raise ValueError("FixedWeights needs at least one model")
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum: {weights}")
        self.weights = dict(weights)

    def choose(self, rng: random.Random) -> str:
        """A model drawn with probability proportional to its weight."""
        x = rng.random() * sum(self.weights.values())
        chosen = None
        for model, w in self.weights.items():
            if w <= 0:
                continue
            chosen = model
            x -= w
            if x < 0:
                break
        return chosen

    def update(self, model: str, reward: float, cost: float = 0.0) -> None:
        """No-op (fixed weights do not learn)."""

    def state(self) -> dict:
        """The weights, for logging."""
        return {"kind": "fixed", "weights": dict(self.weights)}


SELECTORS = ("ucb", "fixed")


def make_model_selector(
    kind: str, models: list[ModelConfig], **options
) -> UCBBandit | FixedWeights:
    """Build a model selector: "ucb" or "fixed".

    "ucb" passes `options` to `UCBBandit`; "fixed" uses each `model.weight` and ignores them.
    """
    if kind == "ucb":
        return UCBBandit([m.name for m in models], **options)
    if kind == "fixed":
        return FixedWeights({m.name: m.weight for m in models})
    raise ValueError(f"unknown model selector {kind!r}; valid kinds: {', '.join(SELECTORS)}")
