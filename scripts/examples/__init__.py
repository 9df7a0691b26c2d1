"""Examples: ``demo_simulation`` (the README's first command) and ``make_sample_data`` (a bundle's sample data)."""
