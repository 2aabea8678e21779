"""The LCD layout as data-formats.md states it, written out independently of the code under test."""

#: The Triforce expert features, in the order caloml writes them.
EXPERT_KEYS = (
    *(f"{calo}_{quantity}" for quantity in ("E", "nHits") for calo in ("ECAL", "HCAL")),
    *(f"HCAL_ECAL_{quantity}Ratio" for quantity in ("E", "nHits")),
    *(f"{calo}_ratioFirstLayerTo{other}E" for calo in ("ECAL", "HCAL") for other in ("Total", "SecondLayer")),
    *(f"{c}moment{a}{k}" for c in ("ECAL", "HCAL") for a in "XYZ" for k in range(1, 7)),
    "R9",
)
