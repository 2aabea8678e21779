"""The LCD layout as data-formats.md states it, written out independently of the code under test."""

#: The Triforce expert features, in the order caloml writes them.
EXPERT_KEYS = (
    "ECAL_E",
    "HCAL_E",
    "ECAL_nHits",
    "HCAL_nHits",
    "HCAL_ECAL_ERatio",
    "HCAL_ECAL_nHitsRatio",
    "ECAL_ratioFirstLayerToTotalE",
    "ECAL_ratioFirstLayerToSecondLayerE",
    "HCAL_ratioFirstLayerToTotalE",
    "HCAL_ratioFirstLayerToSecondLayerE",
    *(f"{c}moment{a}{k}" for c in ("ECAL", "HCAL") for a in "XYZ" for k in range(1, 7)),
    "R9",
)
