"""microtrain: on-device training for microcontrollers (int8, batch 1, 256 KB SRAM)."""

__version__ = "0.1.0"
