"""Training the radiograph model: config, cached data, losses, trainer, calibration."""
