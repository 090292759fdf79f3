"""The live budget guard: spend from instance uptimes × prices, checked at every poll of a running batch.

Clouds bill running instances in increments (per second after a first minute on AWS, GCP
and Azure); stopping takes a moment. So the guard stops the fleet while one more billing
increment of the whole running fleet still fits in the budget: the run never spends more
than the budget plus one increment, however long the teardown's last increment is.
While the projected spend (spent + fleet $/h × remaining time) is over the budget, it also
tells the fleet not to add capacity (no replacement workers or instances).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from costserve.durations import format_duration, format_money
from costserve.errors import BudgetReached
from costserve.store.runs import RunStore

BILLING_INCREMENT_S = 60.0


@dataclass
class BudgetGuard:
    """Checks a run's spend against `budget` ($); `clock` returns unix seconds (a fake in tests)."""

    budget: float
    increment_s: float = BILLING_INCREMENT_S
    clock: Callable[[], float] = field(default=time.time)

    def running_rate(self, store: RunStore) -> float:
        """$/h of the instances running now."""
        return store.running_price_per_hour()

    def check(self, store: RunStore) -> float:
        """The spend so far ($); raises BudgetReached when another increment of the running fleet would cross the budget."""
        now = self.clock()
        spent = store.spend(now)
        next_increment = self.running_rate(store) * self.increment_s / 3600
        if spent + next_increment >= self.budget:
            raise BudgetReached(
                f"budget ${self.budget:g} reached: ${spent:.4f} spent, and the next "
                f"{format_duration(self.increment_s)} of the fleet costs {format_money(next_increment)}"
            )
        return spent

    def may_add_capacity(self, store: RunStore, remaining_s: float | None) -> bool:
        """False while the projected spend (spent + running $/h × remaining seconds) is over the budget."""
        if remaining_s is None:
            return True
        return store.spend(self.clock()) + self.running_rate(store) * remaining_s / 3600 <= self.budget
