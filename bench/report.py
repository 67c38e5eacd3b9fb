"""One row per figure: Ferry's rate, the baseline's, their ratio, and the target."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Figure:
    name: str
    ferry: float
    baseline: float
    unit: str
    target: float  # minimum ratio ferry/baseline (or for "lower is better", maximum)
    higher_is_better: bool = True
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.ferry / self.baseline if self.baseline else float("nan")

    @property
    def ok(self) -> bool:
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target


def print_table(figures: list[Figure]) -> None:
    header = f"{'figure':<44} {'ferry':>12} {'baseline':>12} {'unit':<9} {'ratio':>7} {'target':>8}"
    print(header)
    print("-" * len(header))
    for f in figures:
        sign = ">=" if f.higher_is_better else "<="
        verdict = "ok" if f.ok else "MISS"
        print(
            f"{f.name:<44} {f.ferry:>12,.1f} {f.baseline:>12,.1f} {f.unit:<9} "
            f"{f.ratio:>6.2f}x {sign}{f.target:<5}  {verdict} {f.note}"
        )
