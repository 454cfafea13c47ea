"""Model selectors: UCB1 bandit and fixed weights."""

import random
from collections import Counter

import pytest

from evolve.bandit import FixedWeights, UCBBandit, make_model_selector
from evolve.config import ModelConfig


def run(bandit, rewards, steps, seed=0, costs=None):
    """Drive `bandit` for `steps` rounds with noisy rewards; return the choice sequence."""
    rng = random.Random(seed)
    env = random.Random(seed + 1)
    chosen = []
    for _ in range(steps):
        m = bandit.choose(rng)
        chosen.append(m)
        reward = max(0.0, rewards[m] + env.gauss(0, 0.05))
        bandit.update(m, reward, cost=(costs or {}).get(m, 0.0))
    return chosen


def test_untried_models_first_in_order():
    bandit = UCBBandit(["a", "b", "c"])
    rng = random.Random(0)
    order = []
    for _ in range(3):
        m = bandit.choose(rng)
        order.append(m)
        bandit.update(m, 0.0)
    assert order == ["a", "b", "c"]


def test_converges_to_better_model():
    bandit = UCBBandit(["weak", "strong"], exploration=0.5)
    chosen = run(bandit, {"weak": 0.1, "strong": 0.5}, 300)
    late = Counter(chosen[-100:])
    assert late["strong"] > 85
    state = bandit.state()
    assert state["counts"]["strong"] > state["counts"]["weak"]
    assert state["mean_reward"]["strong"] == pytest.approx(0.5, abs=0.05)


def test_negative_reward_is_clipped():
    bandit = UCBBandit(["a"])
    bandit.update("a", -3.0)
    assert bandit.state()["mean_reward"]["a"] == 0.0
    with pytest.raises(KeyError):
        bandit.update("zzz", 1.0)


def test_deterministic_replay():
    rewards = {"a": 0.2, "b": 0.3, "c": 0.25}
    first = UCBBandit(list(rewards), cost_aware=True)
    chosen = run(first, rewards, 100, seed=5, costs={"a": 1.0, "b": 2.0, "c": 0.5})
    second = UCBBandit(list(rewards), cost_aware=True)
    assert run(second, rewards, 100, seed=5, costs={"a": 1.0, "b": 2.0, "c": 0.5}) == chosen
    # rebuilding from recorded updates gives the same state and the same next choices
    replayed = UCBBandit(list(rewards), cost_aware=True)
    env = random.Random(6)  # same reward noise as run(..., seed=5)
    for m in chosen:
        replayed.update(
            m, max(0.0, rewards[m] + env.gauss(0, 0.05)), cost={"a": 1.0, "b": 2.0, "c": 0.5}[m]
        )
    assert replayed.state() == first.state()
    r1, r2 = random.Random(9), random.Random(9)
    assert [first.choose(r1) for _ in range(10)] == [replayed.choose(r2) for _ in range(10)]


def test_ties_broken_by_rng():
    picks = set()
    for seed in range(20):
        bandit = UCBBandit(["a", "b"])
        bandit.update("a", 0.0)
        bandit.update("b", 0.0)
        picks.add(bandit.choose(random.Random(seed)))
    assert picks == {"a", "b"}


def test_cost_aware_prefers_cheap_model_at_equal_reward():
    rewards = {"pricey": 0.3, "cheap": 0.3}
    costs = {"pricey": 0.05, "cheap": 0.005}
    aware = UCBBandit(["pricey", "cheap"], exploration=0.5, cost_aware=True)
    late = Counter(run(aware, rewards, 200, costs=costs)[-100:])
    assert late["cheap"] > 80
    # with static prices instead of observed costs
    priced = UCBBandit(
        ["pricey", "cheap"], exploration=0.5, cost_aware=True, prices={"pricey": 10.0, "cheap": 1.0}
    )
    assert Counter(run(priced, rewards, 200)[-100:])["cheap"] > 80
    # without cost awareness both keep being used
    plain = UCBBandit(["pricey", "cheap"], exploration=0.5)
    late = Counter(run(plain, rewards, 200, costs=costs)[-100:])
    assert late["cheap"] < 80 and late["pricey"] > 20


def test_fixed_weights_proportions():
    selector = FixedWeights({"a": 3.0, "b": 1.0, "off": 0.0})
    rng = random.Random(1)
    counts = Counter(selector.choose(rng) for _ in range(4000))
    assert counts["off"] == 0
    assert counts["a"] / 4000 == pytest.approx(0.75, abs=0.03)
    selector.update("a", 1.0)  # no-op
    assert selector.state() == {"kind": "fixed", "weights": {"a": 3.0, "b": 1.0, "off": 0.0}}
    again = FixedWeights({"a": 3.0, "b": 1.0, "off": 0.0})
    r1, r2 = random.Random(4), random.Random(4)
    assert [selector.choose(r1) for _ in range(50)] == [again.choose(r2) for _ in range(50)]
    with pytest.raises(ValueError):
        FixedWeights({"a": 0.0})


def test_make_model_selector():
    models = [ModelConfig(name="x", weight=2.0), ModelConfig(name="y", weight=1.0)]
    ucb = make_model_selector("ucb", models, exploration=2.0, cost_aware=True)
    assert isinstance(ucb, UCBBandit) and ucb.models == ["x", "y"] and ucb.exploration == 2.0
    fixed = make_model_selector("fixed", models)
    assert isinstance(fixed, FixedWeights) and fixed.weights == {"x": 2.0, "y": 1.0}
    with pytest.raises(ValueError, match="ucb, fixed"):
        make_model_selector("thompson", models)
