"""Intensity and spatial transforms: small stateless functions; wrappers own the randomness."""
