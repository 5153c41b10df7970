"""Storage home, hash laws and the stage-then-atomic-rename publish protocol."""
