"""What the user sees: console output, one-line errors, progress, params validation messages."""
