"""Radiomics: IBSI-compliant features (mirp engine), IBSI names, compliance scoring, models on features."""
