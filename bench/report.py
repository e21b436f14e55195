"""Hold the measured figures and print them: figure, value, ceiling, ratio, target, verdict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

HEADER = ("figure", "value", "ceiling", "ratio", "target", "verdict", "note")


@dataclass(frozen=True, slots=True)
class Target:
    """What a figure should reach; every bound given must hold for a PASS."""

    at_least: float | None = None
    at_most: float | None = None
    ratio_at_least: float | None = None
    ratio_at_most: float | None = None

    def describe(self) -> str:
        """Say the target in a few words, e.g. `>= 110,000; >= 0.40 x ceiling`."""
        parts = []
        if self.at_least is not None:
            parts.append(f">= {_number(self.at_least)}")
        if self.at_most is not None:
            parts.append(f"<= {_number(self.at_most)}")
        if self.ratio_at_least is not None:
            parts.append(f">= {self.ratio_at_least:.2f} x ceiling")
        if self.ratio_at_most is not None:
            parts.append(f"<= {self.ratio_at_most:.2f} x ceiling")
        return "; ".join(parts)

    def met(self, value: float, ratio: float | None) -> bool:
        """Say whether `value` (and its ratio to the ceiling) meets every bound."""
        checks = [
            self.at_least is None or value >= self.at_least,
            self.at_most is None or value <= self.at_most,
            self.ratio_at_least is None or (ratio is not None and ratio >= self.ratio_at_least),
            self.ratio_at_most is None or (ratio is not None and ratio <= self.ratio_at_most),
        ]
        return all(checks)


@dataclass(frozen=True, slots=True)
class Row:
    """One figure of the table."""

    figure: str
    value: float
    unit: str
    ceiling: float | None = None
    target: Target | None = None
    note: str = ""
    samples: tuple[float, ...] = ()  # every run's value, when the value is their median

    @property
    def ratio(self) -> float | None:
        """Return value / ceiling, where there is a ceiling."""
        return self.value / self.ceiling if self.ceiling else None

    @property
    def verdict(self) -> str:
        """Return PASS or FAIL against the target, or '' without one."""
        if self.target is None:
            return ""
        return "PASS" if self.target.met(self.value, self.ratio) else "FAIL"

    def cells(self) -> tuple[str, ...]:
        """Return the row as the table's text cells."""
        ratio = self.ratio
        return (
            self.figure,
            f"{_number(self.value)} {self.unit}",
            _number(self.ceiling) if self.ceiling is not None else "",
            f"{ratio:.2f}" if ratio is not None else "",
            self.target.describe() if self.target else "",
            self.verdict,
            "; ".join(part for part in (self.spread(), self.note) if part),
        )

    def spread(self) -> str:
        """Say how many runs the value is the median of, and their range."""
        if len(self.samples) < 2:
            return ""
        low, high = _number(min(self.samples)), _number(max(self.samples))
        return f"median of {len(self.samples)}, {low} to {high}"

    def as_json(self) -> dict[str, Any]:
        """Return the row as plain values, derived columns included."""
        return {
            "figure": self.figure,
            "value": self.value,
            "unit": self.unit,
            "ceiling": self.ceiling,
            "ratio": self.ratio,
            "target": self.target.describe() if self.target else None,
            "verdict": self.verdict or None,
            "note": self.note,
            "samples": list(self.samples),
        }


def _number(value: float) -> str:
    """Write a figure with thousands separators; small ones keep two decimals."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def render(rows: list[Row]) -> str:
    """Return the rows as an aligned text table under a header line."""
    table = [HEADER, *(row.cells() for row in rows)]
    widths = [max(len(line[column]) for line in table) for column in range(len(HEADER))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in table
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)
