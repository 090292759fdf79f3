"""What a plan promises at a confidence: its makespan and cost distribution, the slack, and P(meet deadline).

Pydantic only, like solver/plan.py, which carries it (`Plan.outlook`); solver/outlook.py computes it.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class Outlook(BaseModel):
    """A plan's makespan (s) and cost ($) as distributions, from the spread of every prediction it rests on."""

    confidence: float | None = Field(
        description="the confidence the fleet was planned at (its makespan at this "
        "quantile fits the deadline); None: planned on the deadline, open loop"
    )
    quantile: float = Field(description="the quantile the *_quantile figures are at (the confidence, or 0.9)")
    makespan_expected_s: float
    makespan_quantile_s: float
    cost_expected: float
    cost_quantile: float
    slack_s: float = Field(description="deadline − makespan at the quantile (s); negative: short by that much")
    p_meet: float = Field(ge=0, le=1, description="probability the run meets the deadline, open loop (no steering)")
    spread: str = Field("", description="what the spread rests on, e.g. `roofline ±16%, spot 0.34 losses/h`")
