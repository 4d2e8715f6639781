"""Stage 4, subnetworks built from the good masks: size-matched random and bad masks, super-survivors across seeds."""
