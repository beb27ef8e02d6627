# Orbit sample: a small numerical routine, written for HHH Gateway's IP-guard sample corpus.
# Copyright (C) 2026 The HHH Gateway authors
#
# SPDX-License-Identifier: GPL-3.0-or-later
#
# This program is free software: you can redistribute it and/or modify it under the terms of the
# GNU General Public License as published by the Free Software Foundation, either version 3 of the
# License, or (at your option) any later version.


def orbital_period_days(semi_major_axis_au: float, central_mass_solar: float = 1.0) -> float:
    """Kepler's third law, in days, for a body around a star of the given mass."""
    if semi_major_axis_au <= 0 or central_mass_solar <= 0:
        raise ValueError("the semi-major axis and the central mass must be positive")
    period_years = (semi_major_axis_au**3 / central_mass_solar) ** 0.5
    return period_years * 365.25636


def hohmann_transfer_days(inner_au: float, outer_au: float, central_mass_solar: float = 1.0) -> float:
    """Half the period of the transfer ellipse that touches both circular orbits."""
    transfer_axis = (inner_au + outer_au) / 2.0
    return orbital_period_days(transfer_axis, central_mass_solar) / 2.0


def synodic_period_days(first_days: float, second_days: float) -> float:
    """How often two bodies on circular orbits line up again with their star."""
    if first_days == second_days:
        raise ValueError("bodies with equal periods never lap each other")
    return abs(1.0 / (1.0 / first_days - 1.0 / second_days))
