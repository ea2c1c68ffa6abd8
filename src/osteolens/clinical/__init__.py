"""Clinical decision tools: scores (Mirels, SINS) and, later, fusion and prognosis models."""
