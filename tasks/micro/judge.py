"""A campaign's judgement of generated microstructures (pure functions): is an image a usable microstructure, what
is its property, does a condition's mean property land in the target band.

Validity: both phases present and the volume fraction inside the configured bounds (a near-uniform image is no
microstructure and has no transport path to speak of). Properties (the True phase, along axis 0):
``d_eff`` = D_eff/D_0 by taufactor (0 when the phase does not percolate), ``tortuosity`` = τ (inf then),
``volume_fraction``. A condition's value is the mean over its valid images; tortuosity means are over finite
values only (a condition whose images never percolate has no finite tortuosity: None).
"""

from __future__ import annotations

import math

import numpy as np

from tasks.micro.stats import volume_fraction

PROPERTIES = ("d_eff", "tortuosity", "volume_fraction")


def image_validity(image: np.ndarray, bounds: tuple[float, float]) -> str | bool:
    """True, or why the image is not a usable microstructure."""
    vf = volume_fraction(image)
    if vf <= 0.0 or vf >= 1.0:
        return "uniform: a single phase"
    if not bounds[0] <= vf <= bounds[1]:
        return f"volume fraction {vf:.3f} outside [{bounds[0]}, {bounds[1]}]"
    return True


def image_property(image: np.ndarray, name: str) -> float:
    if name not in PROPERTIES:
        raise ValueError(f"unknown property {name!r}; allowed: {', '.join(PROPERTIES)}")
    if name == "volume_fraction":
        return volume_fraction(image)
    from tasks.micro.transport import effective_diffusivity

    result = effective_diffusivity(image, axis=0)
    return result.d_eff if name == "d_eff" else result.tau


def condition_value(values: list[float | None], name: str) -> tuple[float | None, float | None]:
    """Mean and standard deviation of a condition's image values (finite ones for tortuosity)."""
    usable = [v for v in values if v is not None and (name != "tortuosity" or math.isfinite(v))]
    if not usable:
        return None, None
    return float(np.mean(usable)), float(np.std(usable))


def in_band(value: float | None, low: float, high: float) -> bool:
    return value is not None and low <= value <= high
