"""The HTTP service: ``osteolens serve``."""
