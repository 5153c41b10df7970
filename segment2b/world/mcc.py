"""Merchant category codes of the world: the MCC → class map and the channel / virtual model.

Class = MCC category group (``contracts/mcc_classes.yaml``): ``physical_retail`` (goods sold at a
counter, restaurants), ``services`` (travel, lodging, transport, health, repairs, in person or by
appointment), ``digital`` (telecom, streaming, software, marketplaces, online gaming).

Each row of :data:`MCC_TABLE` is ``(mcc, class, weight, p_cnp)``: ``weight`` is the relative
frequency of the code among multi-site merchants and ``p_cnp`` the probability that such a merchant
is acquired card-not-present. The weights give class shares of about 55 % / 33 % / 12 % and an
overall card-not-present share of about 25 % (ingress: 25.27 %, upstream-world.md §3).
"""

from __future__ import annotations

import numpy as np

CLASSES: tuple[str, ...] = ("physical_retail", "services", "digital")
CHANNELS: tuple[str, ...] = ("card_present", "card_not_present")

MCC_TABLE: tuple[tuple[int, str, float, float], ...] = (
    # physical retail: groceries, fuel, apparel, department stores, restaurants
    (5411, "physical_retail", 9.0, 0.04),  # grocery stores, supermarkets
    (5541, "physical_retail", 4.0, 0.01),  # service stations
    (5542, "physical_retail", 2.0, 0.01),  # automated fuel dispensers
    (5311, "physical_retail", 3.0, 0.12),  # department stores
    (5651, "physical_retail", 4.0, 0.15),  # family clothing
    (5691, "physical_retail", 2.0, 0.15),  # men's and women's clothing
    (5661, "physical_retail", 2.0, 0.15),  # shoe stores
    (5812, "physical_retail", 8.0, 0.04),  # restaurants
    (5814, "physical_retail", 6.0, 0.08),  # fast food
    (5813, "physical_retail", 1.5, 0.01),  # bars
    (5912, "physical_retail", 4.0, 0.08),  # drug stores, pharmacies
    (5200, "physical_retail", 2.5, 0.08),  # home supply warehouses
    (5251, "physical_retail", 1.5, 0.06),  # hardware
    (5732, "physical_retail", 2.0, 0.20),  # electronics
    (5942, "physical_retail", 1.0, 0.20),  # book stores
    (5945, "physical_retail", 1.0, 0.15),  # toy and game shops
    (5999, "physical_retail", 1.5, 0.15),  # miscellaneous retail
    (5499, "physical_retail", 2.0, 0.04),  # convenience food
    # services: travel, lodging, transport, health, repairs, personal services
    (4111, "services", 2.0, 0.25),  # commuter transport
    (4121, "services", 1.5, 0.45),  # taxis and ride hailing
    (4511, "services", 1.5, 0.85),  # airlines
    (4722, "services", 1.5, 0.70),  # travel agencies
    (7011, "services", 5.0, 0.35),  # hotels and lodging
    (7512, "services", 1.5, 0.50),  # car rental
    (7523, "services", 1.5, 0.05),  # parking
    (7230, "services", 2.0, 0.05),  # beauty and barber shops
    (7538, "services", 2.0, 0.05),  # car repair
    (7832, "services", 1.5, 0.30),  # cinemas
    (7997, "services", 2.0, 0.25),  # clubs, fitness
    (8011, "services", 2.0, 0.08),  # doctors
    (8021, "services", 1.5, 0.05),  # dentists
    (8062, "services", 1.0, 0.10),  # hospitals
    (8099, "services", 1.0, 0.10),  # health practitioners
    (8220, "services", 1.0, 0.40),  # colleges, universities
    (7210, "services", 1.0, 0.05),  # laundries
    (4900, "services", 1.5, 0.60),  # utilities
    # digital: telecom, streaming, software, marketplaces, online gaming
    (4812, "digital", 2.0, 0.55),  # telecom equipment and services
    (4814, "digital", 2.0, 0.80),  # telecom services
    (4816, "digital", 1.5, 0.95),  # computer network / information services
    (4899, "digital", 1.5, 0.95),  # cable, satellite, streaming
    (5815, "digital", 1.5, 0.97),  # digital goods: media
    (5816, "digital", 1.0, 0.97),  # digital goods: games
    (5817, "digital", 1.0, 0.97),  # digital goods: applications
    (5818, "digital", 1.0, 0.97),  # digital goods: large merchants / marketplaces
    (7372, "digital", 1.0, 0.90),  # computer programming, software
)

VIRTUAL_DIGITAL_CNP = 0.90
"""Probability that a card-not-present digital merchant is virtual before calibration; other
card-not-present merchants take the remainder of ``virtual_share``; card-present never."""


def mcc_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mcc Int32, class index, weight, p_cnp) arrays in table order."""
    mcc = np.array([r[0] for r in MCC_TABLE], dtype=np.int32)
    cls = np.array([CLASSES.index(r[1]) for r in MCC_TABLE], dtype=np.int64)
    w = np.array([r[2] for r in MCC_TABLE], dtype=np.float64)
    p = np.array([r[3] for r in MCC_TABLE], dtype=np.float64)
    return mcc, cls, w, p
