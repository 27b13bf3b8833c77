"""The input gate: is this a frontal chest X-ray at all (`rejected` if not), and is it like the films the
network was trained on (`unfamiliar` if not)? See `pepx.serving.gate.gate` and docs/use.md.

Kept free of imports so that `pepx.serving.bundle` can read the gate's config section
(`pepx.serving.gate.section`) without a cycle; import the modules themselves.
"""
