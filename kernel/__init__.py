"""The kernel: value types, errors and small domain helpers every layer shares. Imports nothing of ours."""
